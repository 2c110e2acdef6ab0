output "instance_name" {
  description = "Name of the Cloud SQL instance."
  value       = google_sql_database_instance.digdag.name
}

output "connection_name" {
  description = "Instance connection name (<project>:<region>:<instance>) for the Cloud SQL Auth Proxy."
  value       = google_sql_database_instance.digdag.connection_name
}

output "private_ip_address" {
  description = "Private IP of the instance."
  value       = google_sql_database_instance.digdag.private_ip_address
}

output "database_name" {
  description = "Digdag's database."
  value       = google_sql_database.digdag.name
}

output "iam_user" {
  description = "PostgreSQL user of the Digdag server (IAM authentication, no password)."
  value       = google_sql_user.digdag_server.name
}

output "iam_users" {
  description = "PostgreSQL users by identity key (digdag_server, digdag_worker): IAM authentication, no password."
  value = {
    digdag_server = google_sql_user.digdag_server.name
    digdag_worker = google_sql_user.digdag_worker.name
  }
}
