variable "project_id" {
  type        = string
  description = "GCP project id; bucket names are <project_id>-<suffix>."
}

variable "location" {
  type        = string
  description = "Location of the buckets (same region as BigQuery and the cluster)."
}

variable "bucket_suffixes" {
  type = object({
    artifacts = string
    exports   = string
  })
  description = "Bucket name suffixes (from the names module)."
}

variable "artifacts_retention_days" {
  type        = number
  description = "Age in days after which artifacts (interactions, models, candidate shards) are deleted."
  default     = 90
}

variable "exports_retention_days" {
  type        = number
  description = "Age in days after which exported recommendation files are deleted."
  default     = 30
}

variable "noncurrent_retention_days" {
  type        = number
  description = "Days a noncurrent (overwritten or deleted) object version is kept."
  default     = 7
}

variable "labels" {
  type        = map(string)
  description = "Labels of the buckets."
  default     = {}
}
