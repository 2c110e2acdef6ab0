variable "project_id" {
  type        = string
  description = "GCP project id."
}

variable "name_prefix" {
  type        = string
  description = "Prefix of the static IP and SSL policy names."
  default     = "reco"
}

variable "allowed_group" {
  type        = string
  description = "Google group email allowed through IAP to the Digdag UI (without the group: prefix)."

  validation {
    condition     = can(regex("^[^@:\\s]+@[^@\\s]+\\.[a-z]+$", var.allowed_group))
    error_message = "allowed_group must be a plain group email such as reco-digdag@example.com."
  }
}

variable "hostname" {
  type        = string
  description = "DNS name of the Digdag UI (its A record points at the static IP)."
}
