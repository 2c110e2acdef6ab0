variable "project_id" {
  type        = string
  description = "GCP project id."
}

variable "location" {
  type        = string
  description = "Region of the repository."
}

variable "repository_id" {
  type        = string
  description = "Repository id (from the names module)."
}

variable "immutable_tags" {
  type        = bool
  description = "Whether a pushed tag can never be moved to another image."
  default     = true
}

variable "untagged_retention_days" {
  type        = number
  description = "Untagged images older than this are deleted."
  default     = 14
}

variable "keep_recent_versions" {
  type        = number
  description = "Number of most recent versions per image kept regardless of other policies."
  default     = 20
}

variable "reader_members" {
  type        = list(string)
  description = "IAM members that pull images (the GKE node service account)."
  default     = []
}

variable "writer_members" {
  type        = list(string)
  description = "IAM members that push images (the CI service account)."
  default     = []
}

variable "labels" {
  type        = map(string)
  description = "Labels of the repository."
  default     = {}
}
