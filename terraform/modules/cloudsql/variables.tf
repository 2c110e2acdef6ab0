variable "project_id" {
  type        = string
  description = "GCP project id."
}

variable "region" {
  type        = string
  description = "Region of the instance."
}

variable "instance_name" {
  type        = string
  description = "Name of the Cloud SQL instance (a deleted name cannot be reused for about a week)."
}

variable "database_version" {
  type        = string
  description = "Cloud SQL PostgreSQL version."
  default     = "POSTGRES_16"
}

variable "database_name" {
  type        = string
  description = "Database used by Digdag (from the names module)."
}

variable "tier" {
  type        = string
  description = "Machine tier, e.g. db-custom-1-3840."
  default     = "db-custom-1-3840"
}

variable "availability_type" {
  type        = string
  description = "ZONAL or REGIONAL (high availability)."
  default     = "ZONAL"

  validation {
    condition     = contains(["ZONAL", "REGIONAL"], var.availability_type)
    error_message = "availability_type must be ZONAL or REGIONAL."
  }
}

variable "disk_size_gb" {
  type        = number
  description = "Initial disk size in GB (it grows automatically)."
  default     = 10
}

variable "private_network_id" {
  type        = string
  description = "VPC id with private services access (network module's private_services_network_id)."
}

variable "backup_start_time" {
  type        = string
  description = "HH:MM (UTC) start of the daily backup window, outside the nightly batch."
  default     = "12:00"
}

variable "retained_backups" {
  type        = number
  description = "Number of daily backups kept."
  default     = 7
}

variable "transaction_log_retention_days" {
  type        = number
  description = "Days of write-ahead logs kept for point-in-time recovery (1 to 7)."
  default     = 7
}

variable "deletion_protection" {
  type        = bool
  description = "Whether Terraform and the Cloud SQL API refuse to delete the instance."
  default     = true
}

variable "digdag_server_service_account_email" {
  type        = string
  description = "Email of the Digdag server GSA, made an IAM database user."
}

variable "digdag_worker_service_account_email" {
  type        = string
  description = "Email of the Digdag worker GSA, made an IAM database user."
}

variable "labels" {
  type        = map(string)
  description = "Labels of the instance."
  default     = {}
}
