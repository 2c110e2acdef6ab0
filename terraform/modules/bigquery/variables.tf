variable "project_id" {
  type        = string
  description = "GCP project id."
}

variable "location" {
  type        = string
  description = "BigQuery location of the datasets (same region as the buckets)."
}

variable "datasets" {
  type = object({
    work    = string
    export  = string
    metrics = string
  })
  description = "Dataset ids (from the names module)."
}

variable "metrics_table" {
  type        = string
  description = "Table id of the run metrics table (from the names module)."
}

variable "recommendations_table_prefix" {
  type        = string
  description = "Prefix of the per-recommender export tables (from the names module)."
}

variable "recommenders" {
  type        = list(string)
  description = "Recommender (pipeline) names; each gets an export table recommendations_<name>."
  default     = []

  validation {
    condition     = alltrue([for r in var.recommenders : can(regex("^[a-z][a-z0-9_]{0,62}$", r))])
    error_message = "Recommender names must match ^[a-z][a-z0-9_]{0,62}$ (they become table ids)."
  }
}

variable "work_table_expiration_days" {
  type        = number
  description = "Days after which tables (and partitions) in the work dataset expire."
  default     = 7
}

variable "export_partition_expiration_days" {
  type        = number
  description = "Days after which export partitions expire; null keeps them."
  default     = null
}

variable "deletion_protection" {
  type        = bool
  description = "When false, destroying the work dataset also deletes its expiring tables. Export and metrics tables are always protected."
  default     = true
}

variable "labels" {
  type        = map(string)
  description = "Labels of the datasets and tables."
  default     = {}
}
