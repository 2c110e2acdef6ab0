# Google service accounts of the workloads, their least-privilege roles, and the Workload Identity
# bindings to the Kubernetes service accounts. No keys are ever created: pods get tokens through the
# GKE metadata server.

locals {
  sa_emails = { for k, sa in google_service_account.workload : k => sa.email }
  members   = { for k, email in local.sa_emails : k => "serviceAccount:${email}" }

  # Dataset-level BigQuery roles: [identity key, dataset id, role].
  dataset_grants = {
    "reco_batch-work"      = { identity = "reco_batch", dataset = var.datasets.work, role = "roles/bigquery.dataEditor" }
    "reco_batch-export"    = { identity = "reco_batch", dataset = var.datasets.export, role = "roles/bigquery.dataEditor" }
    "reco_batch-metrics"   = { identity = "reco_batch", dataset = var.datasets.metrics, role = "roles/bigquery.dataEditor" }
    "digdag_worker-export" = { identity = "digdag_worker", dataset = var.datasets.export, role = "roles/bigquery.dataViewer" }
    "digdag_worker-metrics" = {
      identity = "digdag_worker", dataset = var.datasets.metrics, role = "roles/bigquery.dataViewer"
    }
    # the dashboard reads the metric store, nothing else of the warehouse
    "reco_dashboard-metrics" = {
      identity = "reco_dashboard", dataset = var.datasets.metrics, role = "roles/bigquery.dataViewer"
    }
  }

  # Bucket-level object roles: only on the platform's own buckets.
  bucket_grants = {
    "reco_batch-artifacts"    = { identity = "reco_batch", bucket = var.artifacts_bucket, role = "roles/storage.objectAdmin" }
    "reco_batch-exports"      = { identity = "reco_batch", bucket = var.exports_bucket, role = "roles/storage.objectAdmin" }
    "digdag_worker-artifacts" = { identity = "digdag_worker", bucket = var.artifacts_bucket, role = "roles/storage.objectViewer" }
    # the dashboard reads artifacts (commit markers, exports, reports), never writes them
    "reco_dashboard-artifacts" = { identity = "reco_dashboard", bucket = var.artifacts_bucket, role = "roles/storage.objectViewer" }
  }

  # Read access to the source event datasets the aggregate step reads.
  source_grants = { for d in var.source_datasets : "${d.project}.${d.dataset_id}" => d }
}

resource "google_service_account" "workload" {
  for_each = var.workload_identities

  project      = var.project_id
  account_id   = each.value.gsa_account_id
  display_name = each.value.display_name
  description  = "Used by KSA ${each.value.namespace}/${each.value.ksa} through Workload Identity; no keys."
}

# Workload Identity: the KSA may impersonate its GSA. The workload pool only exists once the cluster does,
# so var.workload_pool must come from the gke module's output.
resource "google_service_account_iam_member" "workload_identity" {
  for_each = var.workload_identities

  service_account_id = google_service_account.workload[each.key].name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${var.workload_pool}[${each.value.namespace}/${each.value.ksa}]"
}

# Project level: only the right to run BigQuery jobs (queries, loads; the dashboard's queries); data access is per
# dataset below.
resource "google_project_iam_member" "bigquery_job_user" {
  for_each = toset(["reco_batch", "digdag_worker", "reco_dashboard"])

  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = local.members[each.value]
}

resource "google_bigquery_dataset_iam_member" "this" {
  for_each = local.dataset_grants

  project    = var.project_id
  dataset_id = each.value.dataset
  role       = each.value.role
  member     = local.members[each.value.identity]
}

resource "google_bigquery_dataset_iam_member" "sources" {
  for_each = local.source_grants

  project    = each.value.project
  dataset_id = each.value.dataset_id
  role       = "roles/bigquery.dataViewer"
  member     = local.members["reco_batch"]
}

resource "google_storage_bucket_iam_member" "this" {
  for_each = local.bucket_grants

  bucket = each.value.bucket
  role   = each.value.role
  member = local.members[each.value.identity]
}

# Both Digdag processes (the server, and the workers, which are Digdag servers without scheduler) reach Cloud SQL
# through the Auth Proxy with IAM database authentication, each as its own GSA. Cloud SQL roles exist only at
# project level, so they are limited to the Digdag instance with an IAM condition (the same one for both).
resource "google_project_iam_member" "digdag_server_cloudsql" {
  for_each = toset(["roles/cloudsql.client", "roles/cloudsql.instanceUser"])

  project = var.project_id
  role    = each.value
  member  = local.members["digdag_server"]

  condition {
    title       = "digdag-instance-only"
    description = "Only the Digdag Cloud SQL instance."
    expression  = "resource.name == \"projects/${var.project_id}/instances/${var.cloudsql_instance_name}\" && resource.service == \"sqladmin.googleapis.com\""
  }
}

resource "google_project_iam_member" "digdag_worker_cloudsql" {
  for_each = toset(["roles/cloudsql.client", "roles/cloudsql.instanceUser"])

  project = var.project_id
  role    = each.value
  member  = local.members["digdag_worker"]

  condition {
    title       = "digdag-instance-only"
    description = "Only the Digdag Cloud SQL instance."
    expression  = "resource.name == \"projects/${var.project_id}/instances/${var.cloudsql_instance_name}\" && resource.service == \"sqladmin.googleapis.com\""
  }
}

# Slack webhook: the Digdag worker sends the alerts.
resource "google_secret_manager_secret_iam_member" "slack_webhook" {
  project   = var.project_id
  secret_id = var.slack_webhook_secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = local.members["digdag_worker"]
}
