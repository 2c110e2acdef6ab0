output "static_ip_name" {
  description = "Name of the global static IP (Ingress annotation kubernetes.io/ingress.global-static-ip-name)."
  value       = google_compute_global_address.digdag_ui.name
}

output "static_ip_address" {
  description = "Address of the global static IP (the hostname's A record)."
  value       = google_compute_global_address.digdag_ui.address
}

output "ssl_policy_name" {
  description = "SSL policy name for the Ingress FrontendConfig (spec.sslPolicy)."
  value       = google_compute_ssl_policy.digdag_ui.name
}

output "hostname" {
  description = "DNS name of the Digdag UI (ManagedCertificate domain, Ingress host)."
  value       = var.hostname
}
