# PostgreSQL for Digdag: private IP only, TLS only, backups with point-in-time recovery, IAM database
# authentication (the Digdag server's GSA is the database user: no password exists anywhere).

resource "google_sql_database_instance" "digdag" {
  project             = var.project_id
  name                = var.instance_name
  region              = var.region
  database_version    = var.database_version
  deletion_protection = var.deletion_protection

  settings {
    tier                        = var.tier
    edition                     = "ENTERPRISE"
    availability_type           = var.availability_type
    disk_type                   = "PD_SSD"
    disk_size                   = var.disk_size_gb
    disk_autoresize             = true
    deletion_protection_enabled = var.deletion_protection
    user_labels                 = var.labels

    ip_configuration {
      ipv4_enabled                                  = false
      private_network                               = var.private_network_id
      ssl_mode                                      = "ENCRYPTED_ONLY"
      enable_private_path_for_google_cloud_services = true
    }

    backup_configuration {
      enabled                        = true
      start_time                     = var.backup_start_time
      point_in_time_recovery_enabled = true
      transaction_log_retention_days = var.transaction_log_retention_days

      backup_retention_settings {
        retained_backups = var.retained_backups
        retention_unit   = "COUNT"
      }
    }

    maintenance_window {
      day          = 7
      hour         = 12
      update_track = "stable"
    }

    insights_config {
      query_insights_enabled = true
    }

    dynamic "database_flags" {
      for_each = local.database_flags
      content {
        name  = database_flags.key
        value = database_flags.value
      }
    }
  }
}

locals {
  database_flags = {
    "cloudsql.iam_authentication" = "on"
    "log_checkpoints"             = "on"
    "log_connections"             = "on"
    "log_disconnections"          = "on"
    "log_lock_waits"              = "on"
    "log_temp_files"              = "0"
    "log_min_messages"            = "error"
    "log_min_error_statement"     = "error"
    "log_min_duration_statement"  = "-1"
    "log_statement"               = "ddl"
    "cloudsql.enable_pgaudit"     = "on"
  }
}

resource "google_sql_database" "digdag" {
  project  = var.project_id
  name     = var.database_name
  instance = google_sql_database_instance.digdag.name
}

# IAM database user: Postgres user name is the GSA email without ".gserviceaccount.com".
resource "google_sql_user" "digdag_server" {
  project  = var.project_id
  name     = trimsuffix(var.digdag_server_service_account_email, ".gserviceaccount.com")
  instance = google_sql_database_instance.digdag.name
  type     = "CLOUD_IAM_SERVICE_ACCOUNT"
}
