output "artifacts_bucket" {
  description = "Name of the artifacts bucket."
  value       = google_storage_bucket.this["artifacts"].name
}

output "exports_bucket" {
  description = "Name of the exports bucket."
  value       = google_storage_bucket.this["exports"].name
}

output "artifacts_url" {
  description = "gs:// URL of the artifacts bucket (the pipeline config's artifact root)."
  value       = "gs://${google_storage_bucket.this["artifacts"].name}"
}

output "exports_url" {
  description = "gs:// URL of the exports bucket."
  value       = "gs://${google_storage_bucket.this["exports"].name}"
}
