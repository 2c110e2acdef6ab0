# The single place where names shared with k8s/base, the pipeline config and Digdag are defined.
# Every other module receives these values from this module's outputs; nothing else spells them.
# tests/terraform checks them against the ServiceAccount objects under k8s/base.

locals {
  # Kubernetes namespaces and the Workload Identity pairs: Kubernetes service account (KSA) -> Google
  # service account (GSA account_id). The KSA must carry the annotation
  # iam.gke.io/gcp-service-account: <gsa_account_id>@<project>.iam.gserviceaccount.com
  namespaces = {
    batch  = "reco-batch"
    digdag = "digdag"
  }

  workload_identities = {
    reco_batch = {
      namespace      = "reco-batch"
      ksa            = "reco-batch"
      gsa_account_id = "reco-batch"
      display_name   = "reco batch Jobs (aggregate, train, candidates, export)"
    }
    digdag_worker = {
      namespace      = "digdag"
      ksa            = "digdag-worker"
      gsa_account_id = "digdag-worker"
      display_name   = "Digdag worker (runs reco submit, creates batch Jobs)"
    }
    digdag_server = {
      namespace      = "digdag"
      ksa            = "digdag-server"
      gsa_account_id = "digdag-server"
      display_name   = "Digdag server (Cloud SQL client through the Cloud SQL Auth Proxy)"
    }
  }

  # Node pool label and taints used by the Job manifests (nodeSelector / tolerations).
  node_class_label = "reco.io/node-class"
  node_classes = {
    system   = "system" # always-on pool: Digdag server/worker, Cloud SQL Auth Proxy
    standard = "standard"
    highmem  = "highmem"
    gpu      = "gpu"
  }
  highmem_taint = {
    key    = "reco.io/highmem"
    value  = "true"
    effect = "NO_SCHEDULE" # Kubernetes: NoSchedule
  }
  gpu_taint = {
    key    = "nvidia.com/gpu"
    value  = "present"
    effect = "NO_SCHEDULE" # Kubernetes: NoSchedule
  }

  artifact_registry_repository = "reco"

  # Buckets are named "<project_id>-<suffix>".
  bucket_suffixes = {
    artifacts = "reco-artifacts"
    exports   = "reco-exports"
  }

  datasets = {
    work    = "reco_work"
    export  = "reco_export"
    metrics = "reco_metrics"
  }
  metrics_table                = "run_metrics"
  recommendations_table_prefix = "recommendations_"

  slack_webhook_secret_id = "slack-webhook-url"
  digdag_database         = "digdag"
  tuning_database         = "reco_tuning" # Optuna studies of `reco tune` (k8s/base/tuning's RECO_TUNING_STORAGE)
}
