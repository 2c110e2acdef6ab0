locals {
  node_metadata = {
    disable-legacy-endpoints = "true"
  }
  oauth_scopes = ["https://www.googleapis.com/auth/cloud-platform"]

  # GKE API taint effects -> Kubernetes spelling (for outputs the manifests compare against).
  k8s_taint_effect = {
    NO_SCHEDULE        = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE         = "NoExecute"
  }
}

# Nodes run as a dedicated service account with only the logging/monitoring roles (and image pull on the
# registry, granted in the registry module); workloads use their own GSA through Workload Identity.
resource "google_service_account" "nodes" {
  project      = var.project_id
  account_id   = "${var.cluster_name}-nodes"
  display_name = "GKE nodes of ${var.cluster_name}"
}

resource "google_project_iam_member" "nodes" {
  for_each = toset([
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/monitoring.viewer",
    "roles/stackdriver.resourceMetadata.writer",
    "roles/autoscaling.metricsWriter",
  ])

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.nodes.email}"
}

resource "google_container_cluster" "this" {
  #checkov:skip=CKV_GCP_65:RBAC through Google Groups needs an organisation gke-security-groups group; RBAC is bound to service accounts and users.
  #checkov:skip=CKV_GCP_24:PodSecurityPolicy was removed in Kubernetes 1.25; Pod Security Admission is used instead.
  project  = var.project_id
  name     = var.cluster_name
  location = var.location

  network         = var.network_self_link
  subnetwork      = var.subnet_self_link
  networking_mode = "VPC_NATIVE"

  # Node pools are managed below; the default pool is removed right after creation.
  remove_default_node_pool = true
  initial_node_count       = 1

  deletion_protection = var.deletion_protection

  release_channel {
    channel = var.release_channel
  }

  ip_allocation_policy {
    cluster_secondary_range_name  = var.pods_range_name
    services_secondary_range_name = var.services_range_name
  }

  private_cluster_config {
    enable_private_nodes    = true
    enable_private_endpoint = var.enable_private_endpoint
    master_ipv4_cidr_block  = var.master_ipv4_cidr_block

    master_global_access_config {
      enabled = true
    }
  }

  master_authorized_networks_config {
    dynamic "cidr_blocks" {
      for_each = var.master_authorized_networks
      content {
        cidr_block   = cidr_blocks.value.cidr_block
        display_name = cidr_blocks.value.display_name
      }
    }
  }

  master_auth {
    client_certificate_config {
      issue_client_certificate = false
    }
  }

  workload_identity_config {
    workload_pool = "${var.project_id}.svc.id.goog"
  }

  enable_shielded_nodes       = true
  enable_intranode_visibility = true
  enable_legacy_abac          = false

  network_policy {
    enabled  = true
    provider = "CALICO"
  }

  addons_config {
    network_policy_config {
      disabled = false
    }
    http_load_balancing {
      disabled = false
    }
    horizontal_pod_autoscaling {
      disabled = false
    }
  }

  binary_authorization {
    evaluation_mode = "PROJECT_SINGLETON_POLICY_ENFORCE"
  }

  # Settings for the (removed) default pool, so that even it never exposes the legacy metadata endpoint.
  node_config {
    service_account = google_service_account.nodes.email
    oauth_scopes    = local.oauth_scopes
    image_type      = "COS_CONTAINERD"
    metadata        = local.node_metadata

    workload_metadata_config {
      mode = "GKE_METADATA"
    }

    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
  }

  logging_config {
    enable_components = ["SYSTEM_COMPONENTS", "WORKLOADS"]
  }

  monitoring_config {
    enable_components = ["SYSTEM_COMPONENTS"]
    managed_prometheus {
      enabled = true
    }
  }

  maintenance_policy {
    recurring_window {
      start_time = var.maintenance_start_time
      end_time   = var.maintenance_end_time
      recurrence = var.maintenance_recurrence
    }
  }

  cost_management_config {
    enabled = true
  }

  resource_labels = var.labels

  lifecycle {
    ignore_changes = [node_config, initial_node_count]
  }
}

# Always-on pool for kube-system, Digdag server/worker and the Cloud SQL Auth Proxy.
resource "google_container_node_pool" "system" {
  project  = var.project_id
  name     = "system"
  cluster  = google_container_cluster.this.id
  location = var.location

  initial_node_count = var.system_min_nodes

  autoscaling {
    total_min_node_count = var.system_min_nodes
    total_max_node_count = var.system_max_nodes
  }

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  node_config {
    machine_type    = var.system_machine_type
    disk_size_gb    = var.system_disk_size_gb
    disk_type       = "pd-balanced"
    image_type      = "COS_CONTAINERD"
    service_account = google_service_account.nodes.email
    oauth_scopes    = local.oauth_scopes
    metadata        = local.node_metadata
    resource_labels = var.labels

    labels = {
      (var.node_class_label) = var.node_classes.system
    }

    workload_metadata_config {
      mode = "GKE_METADATA"
    }

    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
  }

  lifecycle {
    ignore_changes = [initial_node_count]
  }
}

# Batch Jobs on Spot VMs; scales from 0. GKE labels Spot nodes cloud.google.com/gke-spot=true itself.
resource "google_container_node_pool" "batch_standard" {
  project  = var.project_id
  name     = "batch-standard"
  cluster  = google_container_cluster.this.id
  location = var.location

  initial_node_count = 0

  autoscaling {
    total_min_node_count = 0
    total_max_node_count = var.batch_standard_max_nodes
    location_policy      = "ANY"
  }

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  node_config {
    machine_type    = var.batch_standard_machine_type
    spot            = true
    disk_size_gb    = var.batch_disk_size_gb
    disk_type       = "pd-balanced"
    image_type      = "COS_CONTAINERD"
    service_account = google_service_account.nodes.email
    oauth_scopes    = local.oauth_scopes
    metadata        = local.node_metadata
    resource_labels = var.labels

    labels = {
      (var.node_class_label) = var.node_classes.standard
    }

    workload_metadata_config {
      mode = "GKE_METADATA"
    }

    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
  }

  lifecycle {
    ignore_changes = [initial_node_count]
  }
}

# High-memory batch Jobs (training on large matrices); tainted so only Jobs that tolerate it land here.
resource "google_container_node_pool" "batch_highmem" {
  project  = var.project_id
  name     = "batch-highmem"
  cluster  = google_container_cluster.this.id
  location = var.location

  initial_node_count = 0

  autoscaling {
    total_min_node_count = 0
    total_max_node_count = var.batch_highmem_max_nodes
    location_policy      = "ANY"
  }

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  node_config {
    machine_type    = var.batch_highmem_machine_type
    spot            = var.batch_highmem_spot
    disk_size_gb    = var.batch_disk_size_gb
    disk_type       = "pd-balanced"
    image_type      = "COS_CONTAINERD"
    service_account = google_service_account.nodes.email
    oauth_scopes    = local.oauth_scopes
    metadata        = local.node_metadata
    resource_labels = var.labels

    labels = {
      (var.node_class_label) = var.node_classes.highmem
    }

    taint {
      key    = var.highmem_taint.key
      value  = var.highmem_taint.value
      effect = var.highmem_taint.effect
    }

    workload_metadata_config {
      mode = "GKE_METADATA"
    }

    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
  }

  lifecycle {
    ignore_changes = [initial_node_count]
  }
}

# GPU batch Jobs (candidate scoring with implicit's CUDA backend); tainted nvidia.com/gpu=present:NoSchedule.
resource "google_container_node_pool" "batch_gpu" {
  project  = var.project_id
  name     = "batch-gpu"
  cluster  = google_container_cluster.this.id
  location = var.location

  # GPU types are only offered in some zones of a region.
  node_locations = length(var.gpu_node_locations) > 0 ? var.gpu_node_locations : null

  initial_node_count = 0

  autoscaling {
    total_min_node_count = 0
    total_max_node_count = var.batch_gpu_max_nodes
    location_policy      = "ANY"
  }

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  node_config {
    machine_type    = var.gpu_machine_type
    spot            = var.batch_gpu_spot
    disk_size_gb    = var.batch_disk_size_gb
    disk_type       = "pd-balanced"
    image_type      = "COS_CONTAINERD"
    service_account = google_service_account.nodes.email
    oauth_scopes    = local.oauth_scopes
    metadata        = local.node_metadata
    resource_labels = var.labels

    guest_accelerator {
      type  = var.gpu_type
      count = var.gpu_count

      gpu_driver_installation_config {
        gpu_driver_version = "DEFAULT"
      }
    }

    labels = {
      (var.node_class_label) = var.node_classes.gpu
    }

    taint {
      key    = var.gpu_taint.key
      value  = var.gpu_taint.value
      effect = var.gpu_taint.effect
    }

    workload_metadata_config {
      mode = "GKE_METADATA"
    }

    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
  }

  lifecycle {
    ignore_changes = [initial_node_count]
  }
}
