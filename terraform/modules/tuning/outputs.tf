output "database_name" {
  description = "Database holding the Optuna studies."
  value       = google_sql_database.tuning.name
}

output "iam_user" {
  description = "PostgreSQL user of the tuning workers (IAM authentication, no password)."
  value       = google_sql_user.tuning.name
}
