variable "project_id" {
  type        = string
  description = "GCP project id."
}

variable "workload_identities" {
  type = map(object({
    namespace      = string
    ksa            = string
    gsa_account_id = string
    display_name   = string
  }))
  description = "Workload Identity pairs (from the names module); keys reco_batch, digdag_worker, digdag_server and reco_dashboard are required."

  validation {
    condition     = length(setsubtract(["reco_batch", "digdag_worker", "digdag_server", "reco_dashboard"], keys(var.workload_identities))) == 0
    error_message = "workload_identities must contain reco_batch, digdag_worker, digdag_server and reco_dashboard."
  }
}

variable "workload_pool" {
  type        = string
  description = "Workload Identity pool of the cluster (gke module output, so bindings wait for the cluster)."
}

variable "datasets" {
  type = object({
    work    = string
    export  = string
    metrics = string
  })
  description = "Dataset ids (bigquery module outputs, so grants wait for the datasets)."
}

variable "source_datasets" {
  type = list(object({
    project    = string
    dataset_id = string
  }))
  description = "Source event datasets the batch Jobs read (roles/bigquery.dataViewer on each)."
  default     = []
}

variable "artifacts_bucket" {
  type        = string
  description = "Name of the artifacts bucket."
}

variable "exports_bucket" {
  type        = string
  description = "Name of the exports bucket."
}

variable "cloudsql_instance_name" {
  type        = string
  description = "Name of the Digdag Cloud SQL instance (the IAM condition of the Cloud SQL roles of both Digdag GSAs)."
}

variable "slack_webhook_secret_id" {
  type        = string
  description = "Secret id of the Slack webhook secret (secrets module output)."
}
