output "slack_webhook_secret_id" {
  description = "Secret id of the Slack webhook URL."
  value       = google_secret_manager_secret.slack_webhook.secret_id
}

output "slack_webhook_secret_name" {
  description = "Resource name projects/<number>/secrets/<id>; read the latest version from it."
  value       = google_secret_manager_secret.slack_webhook.name
}
