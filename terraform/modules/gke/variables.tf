variable "project_id" {
  type        = string
  description = "GCP project id."
}

variable "cluster_name" {
  type        = string
  description = "Name of the GKE cluster (also the prefix of the node service account id, so at most 24 characters)."

  validation {
    condition     = length(var.cluster_name) <= 24
    error_message = "cluster_name must be at most 24 characters."
  }
}

variable "location" {
  type        = string
  description = "Region (regional cluster) or zone (zonal cluster) of the cluster and its node pools."
}

variable "network_self_link" {
  type        = string
  description = "Self link of the VPC."
}

variable "subnet_self_link" {
  type        = string
  description = "Self link of the subnet with the pods and services secondary ranges."
}

variable "pods_range_name" {
  type        = string
  description = "Secondary range name for pods."
}

variable "services_range_name" {
  type        = string
  description = "Secondary range name for services."
}

variable "master_ipv4_cidr_block" {
  type        = string
  description = "/28 range for the control plane of the private cluster."
}

variable "enable_private_endpoint" {
  type        = bool
  description = "Whether the control plane is reachable only on its private endpoint."
  default     = false
}

variable "master_authorized_networks" {
  type = list(object({
    cidr_block   = string
    display_name = string
  }))
  description = "CIDR blocks allowed to reach the control plane (CI runners, the office VPN)."
  default     = []
}

variable "release_channel" {
  type        = string
  description = "GKE release channel: RAPID, REGULAR or STABLE."
  default     = "REGULAR"

  validation {
    condition     = contains(["RAPID", "REGULAR", "STABLE"], var.release_channel)
    error_message = "release_channel must be RAPID, REGULAR or STABLE."
  }
}

variable "deletion_protection" {
  type        = bool
  description = "Whether Terraform refuses to delete the cluster."
  default     = true
}

variable "maintenance_start_time" {
  type        = string
  description = "Start of the recurring maintenance window (RFC 3339)."
  default     = "2025-01-01T10:00:00Z"
}

variable "maintenance_end_time" {
  type        = string
  description = "End of the recurring maintenance window (RFC 3339), outside the nightly batch."
  default     = "2025-01-01T16:00:00Z"
}

variable "maintenance_recurrence" {
  type        = string
  description = "RRULE of the maintenance window."
  default     = "FREQ=WEEKLY;BYDAY=TU,WE,TH"
}

variable "labels" {
  type        = map(string)
  description = "Labels put on the cluster and its nodes."
  default     = {}
}

variable "node_class_label" {
  type        = string
  description = "Node label key the Job manifests select on (from the names module)."
}

variable "node_classes" {
  type = object({
    system   = string
    standard = string
    highmem  = string
    gpu      = string
  })
  description = "Values of the node class label per pool (from the names module)."
}

variable "highmem_taint" {
  type = object({
    key    = string
    value  = string
    effect = string
  })
  description = "Taint of the high-memory pool (from the names module)."
}

variable "gpu_taint" {
  type = object({
    key    = string
    value  = string
    effect = string
  })
  description = "Taint of the GPU pool (from the names module)."
}

variable "system_machine_type" {
  type        = string
  description = "Machine type of the system pool."
  default     = "e2-standard-4"
}

variable "system_min_nodes" {
  type        = number
  description = "Minimum node count of the system pool (whole cluster)."
  default     = 1
}

variable "system_max_nodes" {
  type        = number
  description = "Maximum node count of the system pool (whole cluster)."
  default     = 3
}

variable "system_disk_size_gb" {
  type        = number
  description = "Boot disk size of system nodes in GB."
  default     = 50
}

variable "batch_disk_size_gb" {
  type        = number
  description = "Boot disk size of batch nodes in GB."
  default     = 100
}

variable "batch_standard_machine_type" {
  type        = string
  description = "Machine type of the standard batch pool."
  default     = "n2-standard-8"
}

variable "batch_standard_max_nodes" {
  type        = number
  description = "Maximum node count of the standard batch pool (it scales from 0)."
  default     = 10
}

variable "batch_highmem_machine_type" {
  type        = string
  description = "Machine type of the high-memory batch pool."
  default     = "n2-highmem-16"
}

variable "batch_highmem_max_nodes" {
  type        = number
  description = "Maximum node count of the high-memory batch pool (it scales from 0)."
  default     = 2
}

variable "batch_highmem_spot" {
  type        = bool
  description = "Whether the high-memory pool uses Spot VMs (cheaper, may be preempted)."
  default     = true
}

variable "gpu_type" {
  type        = string
  description = "Accelerator type of the GPU pool, e.g. nvidia-l4 or nvidia-tesla-t4."
  default     = "nvidia-l4"
}

variable "gpu_count" {
  type        = number
  description = "GPUs per node of the GPU pool."
  default     = 1
}

variable "gpu_machine_type" {
  type        = string
  description = "Machine type of the GPU pool; must fit gpu_type (g2-* for nvidia-l4, n1-* for T4)."
  default     = "g2-standard-8"
}

variable "gpu_node_locations" {
  type        = list(string)
  description = "Zones of the GPU pool where gpu_type is offered; empty means the cluster's zones."
  default     = []
}

variable "batch_gpu_max_nodes" {
  type        = number
  description = "Maximum node count of the GPU pool (it scales from 0)."
  default     = 2
}

variable "batch_gpu_spot" {
  type        = bool
  description = "Whether the GPU pool uses Spot VMs."
  default     = true
}
