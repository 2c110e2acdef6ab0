# The Optuna study database of `reco tune` (docs/tuning.md): a database on the Cloud SQL instance the cloudsql
# module makes, and the batch identity (reco-batch GSA, which the tuning worker pods run as) as an IAM database
# user reached through the Cloud SQL Auth Proxy sidecar with --auto-iam-authn: no password exists anywhere.
# Its privileges inside the database are granted once by hand (IAM users start with none): terraform/README.md.

resource "google_sql_database" "tuning" {
  project  = var.project_id
  name     = var.database_name
  instance = var.instance_name
}

resource "google_sql_user" "tuning" {
  project  = var.project_id
  name     = trimsuffix(var.service_account_email, ".gserviceaccount.com")
  instance = var.instance_name
  type     = "CLOUD_IAM_SERVICE_ACCOUNT"
}

# Cloud SQL roles exist only at project level: limited to the instance with an IAM condition.
resource "google_project_iam_member" "tuning_cloudsql" {
  for_each = toset(["roles/cloudsql.client", "roles/cloudsql.instanceUser"])

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${var.service_account_email}"

  condition {
    title       = "tuning-instance-only"
    description = "Only the Cloud SQL instance holding the tuning database."
    expression  = "resource.name == \"projects/${var.project_id}/instances/${var.instance_name}\" && resource.service == \"sqladmin.googleapis.com\""
  }
}
