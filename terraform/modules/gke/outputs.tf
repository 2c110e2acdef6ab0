output "cluster_name" {
  description = "Name of the GKE cluster."
  value       = google_container_cluster.this.name
}

output "cluster_location" {
  description = "Location (region or zone) of the cluster."
  value       = google_container_cluster.this.location
}

output "cluster_id" {
  description = "Id of the cluster."
  value       = google_container_cluster.this.id
}

output "workload_pool" {
  description = "Workload Identity pool (<project>.svc.id.goog); exists once the cluster exists."
  value       = google_container_cluster.this.workload_identity_config[0].workload_pool
}

output "node_service_account_email" {
  description = "Service account of the nodes (needs image pull on the registry)."
  value       = google_service_account.nodes.email
}

output "node_pools" {
  description = "Node pools with the label and taint that the manifests use."
  value = {
    system = {
      name   = google_container_node_pool.system.name
      labels = { (var.node_class_label) = var.node_classes.system }
      taint  = null
    }
    standard = {
      name   = google_container_node_pool.batch_standard.name
      labels = { (var.node_class_label) = var.node_classes.standard, "cloud.google.com/gke-spot" = "true" }
      taint  = null
    }
    highmem = {
      name   = google_container_node_pool.batch_highmem.name
      labels = { (var.node_class_label) = var.node_classes.highmem }
      taint  = "${var.highmem_taint.key}=${var.highmem_taint.value}:${local.k8s_taint_effect[var.highmem_taint.effect]}"
    }
    gpu = {
      name   = google_container_node_pool.batch_gpu.name
      labels = { (var.node_class_label) = var.node_classes.gpu }
      taint  = "${var.gpu_taint.key}=${var.gpu_taint.value}:${local.k8s_taint_effect[var.gpu_taint.effect]}"
    }
  }
}
