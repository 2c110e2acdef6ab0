# IAP in front of the Digdag UI. The UI is a GKE Ingress (k8s side) that uses:
#   - the global static IP below (annotation kubernetes.io/ingress.global-static-ip-name),
#   - a FrontendConfig with the SSL policy below and an HTTPS redirect,
#   - a BackendConfig with `iap: {enabled: true}` (Google-managed OAuth client, so no client secret exists).
# Access is granted to one group only. The backend service is created by the GKE Ingress controller under a
# generated name, so the grant is on the project's IAP web resources: the Digdag UI and the monitoring dashboard
# (the Ingress's /dashboard path, k8s/base/dashboard) are the project's IAP-protected web backends, for one group.

resource "google_compute_global_address" "digdag_ui" {
  project      = var.project_id
  name         = "${var.name_prefix}-digdag-ui"
  address_type = "EXTERNAL"
  ip_version   = "IPV4"
}

resource "google_compute_ssl_policy" "digdag_ui" {
  project         = var.project_id
  name            = "${var.name_prefix}-digdag-ui"
  profile         = "RESTRICTED"
  min_tls_version = "TLS_1_2"
}

resource "google_iap_web_iam_member" "digdag_ui" {
  project = var.project_id
  role    = "roles/iap.httpsResourceAccessor"
  member  = "group:${var.allowed_group}"
}
