# Inputs of one environment. The organisation-specific values (project id, IAP group, hostname, source datasets,
# control-plane networks) come from envs/<env>/project.auto.tfvars, never committed; everything else is the one
# `settings` object of envs/<env>/terraform.tfvars.

variable "project_id" {
  type        = string
  description = "GCP project id of this environment. Set it in project.auto.tfvars (not committed) or TF_VAR_project_id."
}

variable "digdag_ui_allowed_group" {
  type        = string
  description = "Google group email allowed through IAP to the Digdag UI. Set in project.auto.tfvars."
}

variable "digdag_ui_hostname" {
  type        = string
  description = "DNS name of the Digdag UI. Set in project.auto.tfvars."
}

variable "source_datasets" {
  type = list(object({
    project    = string
    dataset_id = string
  }))
  description = "Source event datasets the batch Jobs read. Set in project.auto.tfvars."
  default     = []
}

variable "master_authorized_networks" {
  type = list(object({
    cidr_block   = string
    display_name = string
  }))
  description = "CIDR blocks allowed to reach the GKE control plane. Set in project.auto.tfvars."
  default     = []
}

variable "settings" {
  type = object({
    environment         = string                    # dev, staging or prod (cluster reco-<env>, Cloud SQL reco-digdag-<env>)
    region              = string                    # network, buckets, datasets, registry and Cloud SQL
    cluster_location    = string                    # zone (zonal cluster, cheaper) or region (regional cluster) of GKE
    labels              = optional(map(string), {}) # extra labels on every resource that takes labels
    deletion_protection = optional(bool, true)      # GKE cluster, Cloud SQL and the export/metrics tables

    # Network: primary range of the GKE subnet, its secondary ranges for pods and services, /28 of the control plane.
    nodes_cidr             = string
    pods_cidr              = string
    services_cidr          = string
    master_ipv4_cidr_block = string
    release_channel        = optional(string, "REGULAR") # GKE release channel

    # Node pools: machine types and maximum sizes (every batch pool scales from 0).
    system_machine_type         = string
    system_max_nodes            = number
    batch_standard_machine_type = string # always Spot
    batch_standard_max_nodes    = number
    batch_highmem_machine_type  = string
    batch_highmem_max_nodes     = number
    batch_highmem_spot          = optional(bool, true)
    gpu_type                    = string                     # accelerator: nvidia-l4, nvidia-tesla-t4, ...
    gpu_machine_type            = string                     # compatible with gpu_type
    gpu_node_locations          = optional(list(string), []) # zones offering gpu_type; empty: the cluster's zones
    batch_gpu_max_nodes         = number
    batch_gpu_spot              = optional(bool, true)

    # Registry, buckets and BigQuery.
    image_pusher_members       = optional(list(string), []) # IAM members (e.g. the CI service account) that push images
    artifacts_retention_days   = number                     # days until objects in the artifacts bucket are deleted
    exports_retention_days     = number                     # days until objects in the exports bucket are deleted
    work_table_expiration_days = number                     # days until tables in reco_work expire
    recommenders               = list(string)               # each gets reco_export.recommendations_<name>

    # Cloud SQL for Digdag.
    cloudsql_tier              = string # machine tier
    cloudsql_availability_type = string # ZONAL or REGIONAL
  })
  description = "Sizes and protection of the environment (envs/<env>/terraform.tfvars); each attribute is explained next to its type."

  validation {
    condition     = contains(["dev", "staging", "prod"], var.settings.environment)
    error_message = "settings.environment must be dev, staging or prod."
  }
}
