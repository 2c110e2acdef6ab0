variable "project_id" {
  type        = string
  description = "GCP project id."
}

variable "region" {
  type        = string
  description = "Region of the subnet, router and NAT."
}

variable "network_name" {
  type        = string
  description = "Name of the VPC; subnet, router and NAT names derive from it."
  default     = "reco"
}

variable "nodes_cidr" {
  type        = string
  description = "Primary range of the GKE subnet (nodes)."
}

variable "pods_cidr" {
  type        = string
  description = "Secondary range for pods (range name \"pods\")."
}

variable "services_cidr" {
  type        = string
  description = "Secondary range for services (range name \"services\")."
}

variable "private_services_prefix_length" {
  type        = number
  description = "Prefix length of the range reserved for private services access (Cloud SQL)."
  default     = 20
}

variable "flow_log_sampling" {
  type        = number
  description = "VPC flow log sampling rate between 0 and 1."
  default     = 0.5
}
