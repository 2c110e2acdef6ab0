# prod: regional cluster and HA Cloud SQL; deletion protection on the cluster, Cloud SQL and tables.
# project_id, the IAP group and the hostname come from project.auto.tfvars (see project.auto.tfvars.example).
# Every attribute is typed and explained in modules/platform/variables.tf (variable "settings").
settings = {
  environment         = "prod"
  region              = "europe-west1"
  cluster_location    = "europe-west1"
  deletion_protection = true

  nodes_cidr             = "10.30.0.0/20"
  pods_cidr              = "10.32.0.0/14"
  services_cidr          = "10.36.0.0/20"
  master_ipv4_cidr_block = "172.16.0.32/28"
  release_channel        = "STABLE"

  system_machine_type         = "e2-standard-4"
  system_max_nodes            = 4
  batch_standard_machine_type = "n2-standard-16"
  batch_standard_max_nodes    = 20
  batch_highmem_machine_type  = "n2-highmem-32"
  batch_highmem_max_nodes     = 4
  batch_highmem_spot          = false
  gpu_type                    = "nvidia-l4"
  gpu_machine_type            = "g2-standard-16"
  gpu_node_locations          = ["europe-west1-b", "europe-west1-c"]
  batch_gpu_max_nodes         = 4

  artifacts_retention_days   = 180
  exports_retention_days     = 60
  work_table_expiration_days = 7

  cloudsql_tier              = "db-custom-2-7680"
  cloudsql_availability_type = "REGIONAL"

  recommenders = ["demo", "creators"]
}
