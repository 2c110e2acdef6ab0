# APIs the platform needs. Every other module takes project_id from this module's output, so nothing is
# created before its API is on.
resource "google_project_service" "this" {
  for_each = toset(var.services)

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}
