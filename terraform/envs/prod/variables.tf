# Declared here, typed and documented again in modules/platform/variables.tf (which also validates settings).

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
  type        = list(object({ project = string, dataset_id = string }))
  description = "Source event datasets the batch Jobs read. Set in project.auto.tfvars."
  default     = []
}

variable "master_authorized_networks" {
  type        = list(object({ cidr_block = string, display_name = string }))
  description = "CIDR blocks allowed to reach the GKE control plane. Set in project.auto.tfvars."
  default     = []
}

variable "settings" {
  type        = any # the object type, with its optional() defaults, is modules/platform's variable "settings"
  description = "Sizes and protection of the environment, set in terraform.tfvars; see modules/platform/variables.tf."
}
