# The platform of one environment: every module call, wired together. envs/<env>/main.tf calls this module;
# environments differ only in their terraform.tfvars (settings) and project.auto.tfvars (project id, group, hostname).

locals {
  labels = merge(var.settings.labels, {
    app         = "reco"
    environment = var.settings.environment
    managed-by  = "terraform"
  })
  cloudsql_instance_name = "reco-digdag-${var.settings.environment}"
}

module "names" {
  source = "../names"
}

module "project" {
  source = "../project"

  project_id = var.project_id
}

module "network" {
  source = "../network"

  project_id    = module.project.project_id
  region        = var.settings.region
  nodes_cidr    = var.settings.nodes_cidr
  pods_cidr     = var.settings.pods_cidr
  services_cidr = var.settings.services_cidr
}

module "gke" {
  source = "../gke"

  project_id                 = module.project.project_id
  cluster_name               = "reco-${var.settings.environment}"
  location                   = var.settings.cluster_location
  network_self_link          = module.network.network_self_link
  subnet_self_link           = module.network.subnet_self_link
  pods_range_name            = module.network.pods_range_name
  services_range_name        = module.network.services_range_name
  master_ipv4_cidr_block     = var.settings.master_ipv4_cidr_block
  master_authorized_networks = var.master_authorized_networks
  release_channel            = var.settings.release_channel
  deletion_protection        = var.settings.deletion_protection
  labels                     = local.labels

  node_class_label = module.names.node_class_label
  node_classes     = module.names.node_classes
  highmem_taint    = module.names.highmem_taint
  gpu_taint        = module.names.gpu_taint

  system_machine_type         = var.settings.system_machine_type
  system_max_nodes            = var.settings.system_max_nodes
  batch_standard_machine_type = var.settings.batch_standard_machine_type
  batch_standard_max_nodes    = var.settings.batch_standard_max_nodes
  batch_highmem_machine_type  = var.settings.batch_highmem_machine_type
  batch_highmem_max_nodes     = var.settings.batch_highmem_max_nodes
  batch_highmem_spot          = var.settings.batch_highmem_spot
  gpu_type                    = var.settings.gpu_type
  gpu_machine_type            = var.settings.gpu_machine_type
  gpu_node_locations          = var.settings.gpu_node_locations
  batch_gpu_max_nodes         = var.settings.batch_gpu_max_nodes
  batch_gpu_spot              = var.settings.batch_gpu_spot
}

module "registry" {
  source = "../registry"

  project_id     = module.project.project_id
  location       = var.settings.region
  repository_id  = module.names.artifact_registry_repository
  reader_members = ["serviceAccount:${module.gke.node_service_account_email}"]
  writer_members = var.settings.image_pusher_members
  labels         = local.labels
}

module "storage" {
  source = "../storage"

  project_id               = module.project.project_id
  location                 = var.settings.region
  bucket_suffixes          = module.names.bucket_suffixes
  artifacts_retention_days = var.settings.artifacts_retention_days
  exports_retention_days   = var.settings.exports_retention_days
  labels                   = local.labels
}

module "bigquery" {
  source = "../bigquery"

  project_id                   = module.project.project_id
  location                     = var.settings.region
  datasets                     = module.names.datasets
  metrics_table                = module.names.metrics_table
  recommendations_table_prefix = module.names.recommendations_table_prefix
  recommenders                 = var.settings.recommenders
  work_table_expiration_days   = var.settings.work_table_expiration_days
  deletion_protection          = var.settings.deletion_protection
  labels                       = local.labels
}

module "secrets" {
  source = "../secrets"

  project_id              = module.project.project_id
  slack_webhook_secret_id = module.names.slack_webhook_secret_id
  labels                  = local.labels
}

module "iam" {
  source = "../iam"

  project_id          = module.project.project_id
  workload_identities = module.names.workload_identities
  workload_pool       = module.gke.workload_pool
  datasets = {
    work    = module.bigquery.work_dataset
    export  = module.bigquery.export_dataset
    metrics = module.bigquery.metrics_dataset
  }
  source_datasets         = var.source_datasets
  artifacts_bucket        = module.storage.artifacts_bucket
  exports_bucket          = module.storage.exports_bucket
  cloudsql_instance_name  = local.cloudsql_instance_name
  slack_webhook_secret_id = module.secrets.slack_webhook_secret_id
}

module "cloudsql" {
  source = "../cloudsql"

  project_id                          = module.project.project_id
  region                              = var.settings.region
  instance_name                       = local.cloudsql_instance_name
  database_name                       = module.names.digdag_database
  tier                                = var.settings.cloudsql_tier
  availability_type                   = var.settings.cloudsql_availability_type
  private_network_id                  = module.network.private_services_network_id
  deletion_protection                 = var.settings.deletion_protection
  digdag_server_service_account_email = module.iam.service_account_emails["digdag_server"]
  digdag_worker_service_account_email = module.iam.service_account_emails["digdag_worker"]
  labels                              = local.labels
}

module "tuning" {
  source = "../tuning"

  project_id            = module.project.project_id
  instance_name         = module.cloudsql.instance_name
  database_name         = module.names.tuning_database
  service_account_email = module.iam.service_account_emails["reco_batch"]
}

module "iap" {
  source = "../iap"

  project_id    = module.project.project_id
  name_prefix   = "reco-${var.settings.environment}"
  allowed_group = var.digdag_ui_allowed_group
  hostname      = var.digdag_ui_hostname
}
