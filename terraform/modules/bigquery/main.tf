locals {
  ms_per_day = 86400000

  # All columns are NULLABLE so that Parquet load jobs (WRITE_TRUNCATE into table$YYYYMMDD) accept files
  # written by pyarrow, whose columns are nullable; the export checks reject null keys before publishing.
  recommendations_schema = [
    { name = "user_id", type = "STRING", mode = "NULLABLE", description = "User id." },
    { name = "item_id", type = "STRING", mode = "NULLABLE", description = "Recommended item id." },
    { name = "rank", type = "INT64", mode = "NULLABLE", description = "1-based rank within the user's list." },
    { name = "score", type = "FLOAT64", mode = "NULLABLE", description = "Model score." },
    { name = "source", type = "STRING", mode = "NULLABLE", description = "Candidate source (model name, fallback)." },
    { name = "model_version", type = "STRING", mode = "NULLABLE", description = "Version of the model that produced the row." },
    { name = "dt", type = "DATE", mode = "NULLABLE", description = "Session date (partition column)." },
  ]

  # The "related items" frame of a recommender (batch/steps/export.py writes <table>_related).
  related_schema = [
    { name = "item_id", type = "STRING", mode = "NULLABLE", description = "Item the list is for." },
    { name = "related_item_id", type = "STRING", mode = "NULLABLE", description = "Related item id." },
    { name = "rank", type = "INT64", mode = "NULLABLE", description = "1-based rank within the item's list." },
    { name = "score", type = "FLOAT64", mode = "NULLABLE", description = "Similarity score." },
    { name = "model_version", type = "STRING", mode = "NULLABLE", description = "Version of the model that produced the row." },
    { name = "dt", type = "DATE", mode = "NULLABLE", description = "Session date (partition column)." },
  ]

  run_metrics_schema = [
    { name = "pipeline", type = "STRING", mode = "NULLABLE", description = "Pipeline (recommender) name." },
    { name = "dt", type = "DATE", mode = "NULLABLE", description = "Session date (partition column)." },
    { name = "step", type = "STRING", mode = "NULLABLE", description = "Step that recorded the metric." },
    { name = "metric", type = "STRING", mode = "NULLABLE", description = "Metric name." },
    { name = "dimensions", type = "STRING", mode = "NULLABLE", description = "Dimensions as a JSON object." },
    { name = "value", type = "FLOAT64", mode = "NULLABLE", description = "Metric value." },
    { name = "recorded_at", type = "TIMESTAMP", mode = "NULLABLE", description = "When the metric was recorded." },
  ]
}

resource "google_bigquery_dataset" "work" {
  #checkov:skip=CKV_GCP_81:Google-managed encryption keys are used for all datasets; CMEK is out of scope.
  project     = var.project_id
  dataset_id  = var.datasets.work
  location    = var.location
  description = "Intermediate tables of the reco batch steps; tables expire on their own."
  labels      = var.labels

  default_table_expiration_ms     = var.work_table_expiration_days * local.ms_per_day
  default_partition_expiration_ms = var.work_table_expiration_days * local.ms_per_day
  delete_contents_on_destroy      = !var.deletion_protection
}

resource "google_bigquery_dataset" "export" {
  #checkov:skip=CKV_GCP_81:Google-managed encryption keys are used for all datasets; CMEK is out of scope.
  project     = var.project_id
  dataset_id  = var.datasets.export
  location    = var.location
  description = "Published recommendations, one table per recommender, partitioned on dt."
  labels      = var.labels

  delete_contents_on_destroy = false
}

resource "google_bigquery_dataset" "metrics" {
  #checkov:skip=CKV_GCP_81:Google-managed encryption keys are used for all datasets; CMEK is out of scope.
  project     = var.project_id
  dataset_id  = var.datasets.metrics
  location    = var.location
  description = "Run metrics of the reco batch pipelines (data checks, model gate, evaluation)."
  labels      = var.labels

  delete_contents_on_destroy = false
}

resource "google_bigquery_table" "run_metrics" {
  #checkov:skip=CKV_GCP_80:Google-managed encryption keys are used; CMEK is out of scope.
  project             = var.project_id
  dataset_id          = google_bigquery_dataset.metrics.dataset_id
  table_id            = var.metrics_table
  description         = "One row per metric per step per run."
  deletion_protection = true
  labels              = var.labels
  schema              = jsonencode(local.run_metrics_schema)
  clustering          = ["pipeline", "step", "metric"]

  time_partitioning {
    type  = "DAY"
    field = "dt"
  }
}

# One export table per recommender: add a name to var.recommenders and apply. Published data is always
# protected: removing a name fails the plan until the table is dropped on purpose (see terraform/README.md).
resource "google_bigquery_table" "recommendations" {
  #checkov:skip=CKV_GCP_80:Google-managed encryption keys are used; CMEK is out of scope.
  for_each = toset(var.recommenders)

  project             = var.project_id
  dataset_id          = google_bigquery_dataset.export.dataset_id
  table_id            = "${var.recommendations_table_prefix}${each.value}"
  description         = "Recommendations of ${each.value}, one partition per session date (dt)."
  deletion_protection = true
  labels              = merge(var.labels, { recommender = each.value })
  schema              = jsonencode(local.recommendations_schema)
  clustering          = ["user_id"]

  time_partitioning {
    type          = "DAY"
    field         = "dt"
    expiration_ms = var.export_partition_expiration_days == null ? null : var.export_partition_expiration_days * local.ms_per_day
  }
}

# The related-items table of each recommender: same lifecycle as its recommendations table.
resource "google_bigquery_table" "related" {
  #checkov:skip=CKV_GCP_80:Google-managed encryption keys are used; CMEK is out of scope.
  for_each = toset(var.recommenders)

  project             = var.project_id
  dataset_id          = google_bigquery_dataset.export.dataset_id
  table_id            = "${var.recommendations_table_prefix}${each.value}_related"
  description         = "Related items of ${each.value}, one partition per session date (dt)."
  deletion_protection = true
  labels              = merge(var.labels, { recommender = each.value })
  schema              = jsonencode(local.related_schema)
  clustering          = ["item_id"]

  time_partitioning {
    type          = "DAY"
    field         = "dt"
    expiration_ms = var.export_partition_expiration_days == null ? null : var.export_partition_expiration_days * local.ms_per_day
  }
}
