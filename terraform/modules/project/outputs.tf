output "project_id" {
  description = "The project id, available only once the APIs are enabled (use it as every module's project_id)."
  value       = var.project_id
  depends_on  = [google_project_service.this]
}
