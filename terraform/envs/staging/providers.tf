provider "google" {
  project = var.project_id
  region  = var.settings.region
}
