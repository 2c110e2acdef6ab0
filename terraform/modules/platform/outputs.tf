# Everything the Kustomize overlays and the pipeline config need. envs/<env>/outputs.tf forwards each one under
# the same name (`terraform output -json` per environment; scripts/overlay.py reads them by name).

output "project_id" {
  description = "GCP project id (pipeline config: warehouse project)."
  value       = var.project_id
}

output "region" {
  description = "Region of the data and the registry."
  value       = var.settings.region
}

output "cluster_name" {
  description = "GKE cluster name (gcloud container clusters get-credentials, the GKE runner's context)."
  value       = module.gke.cluster_name
}

output "cluster_location" {
  description = "GKE cluster location."
  value       = module.gke.cluster_location
}

output "image_repository" {
  description = "Artifact Registry Docker prefix (overlay images: newName)."
  value       = module.registry.repository_url
}

output "artifacts_url" {
  description = "gs:// root of artifacts (pipeline config: storage root)."
  value       = module.storage.artifacts_url
}

output "exports_url" {
  description = "gs:// root of exported files (pipeline config: export location)."
  value       = module.storage.exports_url
}

output "bigquery_datasets" {
  description = "Dataset ids (pipeline config: warehouse datasets)."
  value = {
    work    = module.bigquery.work_dataset
    export  = module.bigquery.export_dataset
    metrics = module.bigquery.metrics_dataset
  }
}

output "metrics_table" {
  description = "project.dataset.table of the run metrics (pipeline config: metrics sink)."
  value       = module.bigquery.metrics_table
}

output "recommendation_tables" {
  description = "Recommender name -> project.dataset.table of its export table (pipeline config: export target)."
  value       = module.bigquery.recommendation_tables
}

output "ksa_annotations" {
  description = "\"<namespace>/<ksa>\" -> GSA email for the iam.gke.io/gcp-service-account annotation (overlay patches)."
  value       = module.iam.ksa_annotations
}

output "node_pools" {
  description = "Batch node pools with their labels and taints (overlay nodeSelector/tolerations)."
  value       = module.gke.node_pools
}

output "cloudsql_connection_name" {
  description = "Instance connection name for the Cloud SQL Auth Proxy sidecar of the Digdag server."
  value       = module.cloudsql.connection_name
}

output "cloudsql_database" {
  description = "Digdag database name."
  value       = module.cloudsql.database_name
}

output "cloudsql_iam_user" {
  description = "Digdag server's PostgreSQL user (IAM authentication through the proxy's --auto-iam-authn)."
  value       = module.cloudsql.iam_user
}

output "cloudsql_iam_users" {
  description = "PostgreSQL users of the Digdag server and workers (digdag_server, digdag_worker): the one-off GRANT."
  value       = module.cloudsql.iam_users
}

output "slack_webhook_secret" {
  description = "Secret Manager resource name of the Slack webhook URL (add the value with gcloud, see README)."
  value       = module.secrets.slack_webhook_secret_name
}

# The three values below are also flat outputs whose names are the keys of k8s/overlays/<env>/deployment.env
# (Ingress static IP annotation, FrontendConfig sslPolicy, Ingress host and ManagedCertificate domain).
output "digdag_ui_static_ip_name" {
  description = "Global static IP name of the Digdag UI (deployment.env: Ingress kubernetes.io/ingress.global-static-ip-name)."
  value       = module.iap.static_ip_name
}

output "digdag_ui_ssl_policy_name" {
  description = "SSL policy name of the Digdag UI (deployment.env: FrontendConfig spec.sslPolicy)."
  value       = module.iap.ssl_policy_name
}

output "digdag_ui_hostname" {
  description = "DNS name of the Digdag UI (deployment.env: Ingress host and ManagedCertificate domain)."
  value       = module.iap.hostname
}

output "digdag_ui" {
  description = "Ingress settings of the Digdag UI: static IP name and address, SSL policy, hostname."
  value = {
    static_ip_name    = module.iap.static_ip_name
    static_ip_address = module.iap.static_ip_address
    ssl_policy_name   = module.iap.ssl_policy_name
    hostname          = module.iap.hostname
  }
}
