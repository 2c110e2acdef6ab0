# PostgreSQL for Digdag: private IP only, TLS only, backups with point-in-time recovery, IAM database
# authentication (the GSAs of the Digdag server and of the Digdag workers are the database users: no password
# exists anywhere).

resource "google_sql_database_instance" "digdag" {
  #checkov:skip=CKV2_GCP_13:Digdag polls its database continuously; logging every statement duration would flood Cloud Logging. Slow queries show in Query Insights.
  #checkov:skip=CKV_GCP_79:The major version is a variable (default POSTGRES_16, supported by Digdag); major upgrades are planned, not automatic.
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
      ssl_mode                                      = "TRUSTED_CLIENT_CERTIFICATE_REQUIRED" # the Auth Proxy presents client certificates
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

    # IAM database authentication for the Digdag server's and workers' GSAs.
    database_flags {
      name  = "cloudsql.iam_authentication"
      value = "on"
    }

    database_flags {
      name  = "cloudsql.enable_pgaudit"
      value = "on"
    }

    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }

    database_flags {
      name  = "log_connections"
      value = "on"
    }

    database_flags {
      name  = "log_disconnections"
      value = "on"
    }

    database_flags {
      name  = "log_hostname"
      value = "on"
    }

    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }

    database_flags {
      name  = "log_min_duration_statement"
      value = "-1"
    }

    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }

    database_flags {
      name  = "log_min_messages"
      value = "error"
    }

    database_flags {
      name  = "log_statement"
      value = "ddl"
    }

    database_flags {
      name  = "log_temp_files"
      value = "0"
    }
  }
}

resource "google_sql_database" "digdag" {
  project  = var.project_id
  name     = var.database_name
  instance = google_sql_database_instance.digdag.name
}

# IAM database users: the Postgres user name is the GSA email without ".gserviceaccount.com". The workers are
# Digdag servers too (same database, no scheduler), so they sign in as their own GSA, like the server.
# Their privileges inside the database are granted once by hand (IAM users start with none): terraform/README.md.
resource "google_sql_user" "digdag_server" {
  project  = var.project_id
  name     = trimsuffix(var.digdag_server_service_account_email, ".gserviceaccount.com")
  instance = google_sql_database_instance.digdag.name
  type     = "CLOUD_IAM_SERVICE_ACCOUNT"
}

resource "google_sql_user" "digdag_worker" {
  project  = var.project_id
  name     = trimsuffix(var.digdag_worker_service_account_email, ".gserviceaccount.com")
  instance = google_sql_database_instance.digdag.name
  type     = "CLOUD_IAM_SERVICE_ACCOUNT"
}
