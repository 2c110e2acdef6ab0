locals {
  buckets = {
    artifacts = {
      name                      = "${var.project_id}-${var.bucket_suffixes.artifacts}"
      retention_days            = var.artifacts_retention_days
      noncurrent_retention_days = var.noncurrent_retention_days
    }
    exports = {
      name                      = "${var.project_id}-${var.bucket_suffixes.exports}"
      retention_days            = var.exports_retention_days
      noncurrent_retention_days = var.noncurrent_retention_days
    }
  }
}

resource "google_storage_bucket" "this" {
  #checkov:skip=CKV_GCP_62:Object access is recorded by Cloud Audit Logs (data access); usage-log buckets are not used.
  for_each = local.buckets

  project                     = var.project_id
  name                        = each.value.name
  location                    = var.location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = merge(var.labels, { purpose = each.key })

  versioning {
    enabled = true
  }

  # Date-partitioned outputs older than the retention are deleted (the live version becomes noncurrent).
  lifecycle_rule {
    condition {
      age = each.value.retention_days
    }
    action {
      type = "Delete"
    }
  }

  # Overwritten or deleted objects (e.g. the "latest" pointer) are kept for a while for recovery.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = each.value.noncurrent_retention_days
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      age = 1
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }
}
