# staging: same shape as prod, smaller; regional cluster so that upgrades behave as in prod.
# project_id, the IAP group and the hostname come from project.auto.tfvars (see project.auto.tfvars.example).
# Every attribute is typed and explained in modules/platform/variables.tf (variable "settings").
settings = {
  environment         = "staging"
  region              = "europe-west1"
  cluster_location    = "europe-west1"
  deletion_protection = false

  nodes_cidr             = "10.20.0.0/20"
  pods_cidr              = "10.24.0.0/14"
  services_cidr          = "10.28.0.0/20"
  master_ipv4_cidr_block = "172.16.0.16/28"
  release_channel        = "REGULAR"

  system_machine_type         = "e2-standard-4"
  system_max_nodes            = 3
  batch_standard_machine_type = "n2-standard-8"
  batch_standard_max_nodes    = 8
  batch_highmem_machine_type  = "n2-highmem-16"
  batch_highmem_max_nodes     = 2
  gpu_type                    = "nvidia-l4"
  gpu_machine_type            = "g2-standard-8"
  gpu_node_locations          = ["europe-west1-b", "europe-west1-c"]
  batch_gpu_max_nodes         = 2

  artifacts_retention_days   = 60
  exports_retention_days     = 30
  work_table_expiration_days = 7

  cloudsql_tier              = "db-custom-1-3840"
  cloudsql_availability_type = "ZONAL"

  recommenders = ["demo", "creators"]
}
