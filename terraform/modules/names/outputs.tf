output "namespaces" {
  description = "Kubernetes namespaces: batch Jobs and Digdag."
  value       = local.namespaces
}

output "workload_identities" {
  description = "Map of Workload Identity pairs: namespace, KSA name, GSA account_id, display name."
  value       = local.workload_identities
}

output "node_class_label" {
  description = "Node label key that the Job manifests select on."
  value       = local.node_class_label
}

output "node_classes" {
  description = "Values of the node class label per node pool (system and the batch pools)."
  value       = local.node_classes
}

output "highmem_taint" {
  description = "Taint of the high-memory batch pool (GKE API effect spelling)."
  value       = local.highmem_taint
}

output "gpu_taint" {
  description = "Taint of the GPU batch pool (GKE API effect spelling)."
  value       = local.gpu_taint
}

output "artifact_registry_repository" {
  description = "Artifact Registry repository id for the images."
  value       = local.artifact_registry_repository
}

output "bucket_suffixes" {
  description = "Bucket name suffixes; buckets are named <project_id>-<suffix>."
  value       = local.bucket_suffixes
}

output "datasets" {
  description = "BigQuery dataset ids: work, export, metrics."
  value       = local.datasets
}

output "metrics_table" {
  description = "Table id of the run metrics table in the metrics dataset."
  value       = local.metrics_table
}

output "recommendations_table_prefix" {
  description = "Prefix of the per-recommender export tables (recommendations_<name>)."
  value       = local.recommendations_table_prefix
}

output "slack_webhook_secret_id" {
  description = "Secret Manager secret id holding the Slack webhook URL."
  value       = local.slack_webhook_secret_id
}

output "digdag_database" {
  description = "PostgreSQL database name used by Digdag."
  value       = local.digdag_database
}

output "tuning_database" {
  description = "PostgreSQL database holding the Optuna studies of reco tune."
  value       = local.tuning_database
}
