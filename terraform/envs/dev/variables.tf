variable "project_id" {
  type        = string
  description = "GCP project id of this environment. Set it in project.auto.tfvars (not committed) or TF_VAR_project_id."
}

variable "environment" {
  type        = string
  description = "Environment name: dev, staging or prod."

  validation {
    condition     = contains(["dev", "staging", "prod"], var.environment)
    error_message = "environment must be dev, staging or prod."
  }
}

variable "region" {
  type        = string
  description = "Region of the network, buckets, datasets, registry and Cloud SQL."
}

variable "cluster_location" {
  type        = string
  description = "Zone (zonal cluster, cheaper) or region (regional cluster) of GKE."
}

variable "labels" {
  type        = map(string)
  description = "Extra labels put on every resource that takes labels."
  default     = {}
}

variable "deletion_protection" {
  type        = bool
  description = "Deletion protection of the GKE cluster, Cloud SQL and the export/metrics tables."
  default     = true
}

variable "nodes_cidr" {
  type        = string
  description = "Primary range of the GKE subnet."
}

variable "pods_cidr" {
  type        = string
  description = "Secondary range for pods."
}

variable "services_cidr" {
  type        = string
  description = "Secondary range for services."
}

variable "master_ipv4_cidr_block" {
  type        = string
  description = "/28 range of the GKE control plane."
}

variable "master_authorized_networks" {
  type = list(object({
    cidr_block   = string
    display_name = string
  }))
  description = "CIDR blocks allowed to reach the GKE control plane."
  default     = []
}

variable "release_channel" {
  type        = string
  description = "GKE release channel."
  default     = "REGULAR"
}

variable "system_machine_type" {
  type        = string
  description = "Machine type of the system pool."
}

variable "system_max_nodes" {
  type        = number
  description = "Maximum nodes of the system pool."
}

variable "batch_standard_machine_type" {
  type        = string
  description = "Machine type of the Spot standard batch pool."
}

variable "batch_standard_max_nodes" {
  type        = number
  description = "Maximum nodes of the standard batch pool."
}

variable "batch_highmem_machine_type" {
  type        = string
  description = "Machine type of the high-memory batch pool."
}

variable "batch_highmem_max_nodes" {
  type        = number
  description = "Maximum nodes of the high-memory batch pool."
}

variable "batch_highmem_spot" {
  type        = bool
  description = "Whether the high-memory pool uses Spot VMs."
  default     = true
}

variable "gpu_type" {
  type        = string
  description = "Accelerator type of the GPU pool (nvidia-l4, nvidia-tesla-t4, ...)."
}

variable "gpu_machine_type" {
  type        = string
  description = "Machine type of the GPU pool, compatible with gpu_type."
}

variable "gpu_node_locations" {
  type        = list(string)
  description = "Zones of the GPU pool where gpu_type is offered; empty means the cluster's zones."
  default     = []
}

variable "batch_gpu_max_nodes" {
  type        = number
  description = "Maximum nodes of the GPU pool."
}

variable "batch_gpu_spot" {
  type        = bool
  description = "Whether the GPU pool uses Spot VMs."
  default     = true
}

variable "image_pusher_members" {
  type        = list(string)
  description = "IAM members (e.g. the CI service account) allowed to push images to the registry."
  default     = []
}

variable "artifacts_retention_days" {
  type        = number
  description = "Days after which objects in the artifacts bucket are deleted."
}

variable "exports_retention_days" {
  type        = number
  description = "Days after which objects in the exports bucket are deleted."
}

variable "recommenders" {
  type        = list(string)
  description = "Recommender (pipeline) names; each gets the export table reco_export.recommendations_<name>."
}

variable "source_datasets" {
  type = list(object({
    project    = string
    dataset_id = string
  }))
  description = "Source event datasets the batch Jobs read. Set in project.auto.tfvars."
  default     = []
}

variable "work_table_expiration_days" {
  type        = number
  description = "Days after which tables in reco_work expire."
}

variable "cloudsql_tier" {
  type        = string
  description = "Machine tier of the Digdag Cloud SQL instance."
}

variable "cloudsql_availability_type" {
  type        = string
  description = "ZONAL or REGIONAL Cloud SQL instance."
}

variable "digdag_ui_allowed_group" {
  type        = string
  description = "Google group email allowed through IAP to the Digdag UI. Set in project.auto.tfvars."
}

variable "digdag_ui_hostname" {
  type        = string
  description = "DNS name of the Digdag UI. Set in project.auto.tfvars."
}
