# State bucket: terraform init -backend-config="bucket=<state bucket>" (kept out of code, see README).
terraform {
  backend "gcs" {
    prefix = "reco-batch/staging"
  }
}
