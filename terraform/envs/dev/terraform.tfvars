# dev: small, zonal, everything scales to 0, no deletion protection (it is rebuilt freely).
# project_id, the IAP group and the hostname come from project.auto.tfvars (see project.auto.tfvars.example).
# Every attribute is typed and explained in modules/platform/variables.tf (variable "settings").
settings = {
  environment         = "dev"
  region              = "europe-west1"
  cluster_location    = "europe-west1-b"
  deletion_protection = false

  nodes_cidr             = "10.10.0.0/20"
  pods_cidr              = "10.12.0.0/14"
  services_cidr          = "10.16.0.0/20"
  master_ipv4_cidr_block = "172.16.0.0/28"
  release_channel        = "REGULAR"

  system_machine_type         = "e2-standard-2"
  system_max_nodes            = 2
  batch_standard_machine_type = "n2-standard-4"
  batch_standard_max_nodes    = 4
  batch_highmem_machine_type  = "n2-highmem-8"
  batch_highmem_max_nodes     = 1
  gpu_type                    = "nvidia-l4"
  gpu_machine_type            = "g2-standard-8"
  gpu_node_locations          = ["europe-west1-b"]
  batch_gpu_max_nodes         = 1

  artifacts_retention_days   = 30
  exports_retention_days     = 14
  work_table_expiration_days = 3

  cloudsql_tier              = "db-custom-1-3840"
  cloudsql_availability_type = "ZONAL"

  recommenders = ["demo", "creators"]
}
