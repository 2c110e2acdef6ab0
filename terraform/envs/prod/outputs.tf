# The outputs of modules/platform (described there) under the same names: the keys of `terraform output -json`
# that k8s/overlays/<env>/deployment.env (scripts/overlay.py configure) and the pipeline config read.

output "project_id" { value = module.platform.project_id }
output "region" { value = module.platform.region }
output "cluster_name" { value = module.platform.cluster_name }
output "cluster_location" { value = module.platform.cluster_location }
output "image_repository" { value = module.platform.image_repository }
output "artifacts_url" { value = module.platform.artifacts_url }
output "exports_url" { value = module.platform.exports_url }
output "bigquery_datasets" { value = module.platform.bigquery_datasets }
output "metrics_table" { value = module.platform.metrics_table }
output "recommendation_tables" { value = module.platform.recommendation_tables }
output "ksa_annotations" { value = module.platform.ksa_annotations }
output "node_pools" { value = module.platform.node_pools }
output "cloudsql_connection_name" { value = module.platform.cloudsql_connection_name }
output "cloudsql_database" { value = module.platform.cloudsql_database }
output "cloudsql_iam_user" { value = module.platform.cloudsql_iam_user }
output "cloudsql_iam_users" { value = module.platform.cloudsql_iam_users }
output "slack_webhook_secret" { value = module.platform.slack_webhook_secret }
output "digdag_ui_static_ip_name" { value = module.platform.digdag_ui_static_ip_name }
output "digdag_ui_ssl_policy_name" { value = module.platform.digdag_ui_ssl_policy_name }
output "digdag_ui_hostname" { value = module.platform.digdag_ui_hostname }
output "digdag_ui" { value = module.platform.digdag_ui }
