variable "project_id" {
  type        = string
  description = "GCP project id."
}

variable "slack_webhook_secret_id" {
  type        = string
  description = "Secret id of the Slack webhook URL (from the names module)."
}

variable "labels" {
  type        = map(string)
  description = "Labels of the secret."
  default     = {}
}
