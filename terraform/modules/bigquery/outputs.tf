output "work_dataset" {
  description = "Dataset id of the work dataset."
  value       = google_bigquery_dataset.work.dataset_id
}

output "export_dataset" {
  description = "Dataset id of the export dataset."
  value       = google_bigquery_dataset.export.dataset_id
}

output "metrics_dataset" {
  description = "Dataset id of the metrics dataset."
  value       = google_bigquery_dataset.metrics.dataset_id
}

output "metrics_table" {
  description = "Fully qualified id of the run metrics table (project.dataset.table)."
  value       = "${var.project_id}.${google_bigquery_dataset.metrics.dataset_id}.${google_bigquery_table.run_metrics.table_id}"
}

output "recommendation_tables" {
  description = "Map of recommender name to the fully qualified id of its export table."
  value       = { for name, t in google_bigquery_table.recommendations : name => "${var.project_id}.${t.dataset_id}.${t.table_id}" }
}

output "related_tables" {
  description = "Map of recommender name to the fully qualified id of its related-items table."
  value       = { for name, t in google_bigquery_table.related : name => "${var.project_id}.${t.dataset_id}.${t.table_id}" }
}
