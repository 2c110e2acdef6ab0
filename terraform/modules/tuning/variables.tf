variable "project_id" {
  type        = string
  description = "GCP project id."
}

variable "instance_name" {
  type        = string
  description = "Name of the Cloud SQL instance (the cloudsql module's instance_name output)."
}

variable "database_name" {
  type        = string
  description = "Database holding the Optuna studies (from the names module)."
}

variable "service_account_email" {
  type        = string
  description = "Email of the GSA the tuning worker pods run as (reco-batch), made an IAM database user."
}
