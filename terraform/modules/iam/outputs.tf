output "service_account_emails" {
  description = "Map of identity key (reco_batch, digdag_worker, digdag_server, reco_dashboard) to GSA email."
  value       = local.sa_emails
}

output "ksa_annotations" {
  description = "Map of \"<namespace>/<ksa>\" to the iam.gke.io/gcp-service-account annotation value."
  value = {
    for k, wi in var.workload_identities : "${wi.namespace}/${wi.ksa}" => google_service_account.workload[k].email
  }
}
