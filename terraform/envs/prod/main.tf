# Thin environment: the platform module (modules/platform holds every module call) with this environment's
# values. dev, staging and prod differ only in terraform.tfvars (settings), backend.tf (state prefix) and the
# uncommitted project.auto.tfvars (project id, IAP group, hostname, source datasets, control-plane networks).

module "platform" {
  source = "../../modules/platform"

  project_id                 = var.project_id
  digdag_ui_allowed_group    = var.digdag_ui_allowed_group
  digdag_ui_hostname         = var.digdag_ui_hostname
  source_datasets            = var.source_datasets
  master_authorized_networks = var.master_authorized_networks
  settings                   = var.settings
}
