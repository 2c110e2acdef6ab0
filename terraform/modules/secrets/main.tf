# The secret only: its value is added out of band
#   printf '%s' "$WEBHOOK_URL" | gcloud secrets versions add slack-webhook-url --data-file=-
# so it never appears in code, plans or state.
resource "google_secret_manager_secret" "slack_webhook" {
  project   = var.project_id
  secret_id = var.slack_webhook_secret_id
  labels    = var.labels

  replication {
    auto {}
  }
}
