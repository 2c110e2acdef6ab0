"""The dashboard's Google service account: Workload Identity for the KSA of k8s/base/dashboard, read-only roles on
the metric dataset and the artifacts bucket, the BigQuery job right to query, nothing else."""

from __future__ import annotations

import yaml
from tf_helpers import K8S_BASE, MODULES_DIR, attr, locals_of, names_locals, parse_dir, resources


def test_the_dashboard_identity_matches_its_service_account_manifest():
    wi = names_locals()["workload_identities"]["reco_dashboard"]
    sa = yaml.safe_load((K8S_BASE / "dashboard" / "serviceaccount.yaml").read_text())
    kustomization = yaml.safe_load((K8S_BASE / "dashboard" / "kustomization.yaml").read_text())
    assert (wi["namespace"], wi["ksa"]) == (kustomization["namespace"], sa["metadata"]["name"])
    annotation = sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
    assert annotation == f"{wi['gsa_account_id']}@PROJECT_ID.iam.gserviceaccount.com"


def test_the_dashboard_can_read_metrics_and_artifacts_and_write_nothing():
    iam = locals_of(parse_dir(MODULES_DIR / "iam"))
    datasets = {k: g for k, g in iam["dataset_grants"].items() if g["identity"] == "reco_dashboard"}
    buckets = {k: g for k, g in iam["bucket_grants"].items() if g["identity"] == "reco_dashboard"}
    assert [(g["dataset"], g["role"]) for g in datasets.values()] == [
        ("${var.datasets.metrics}", "roles/bigquery.dataViewer")
    ]
    assert [(g["bucket"], g["role"]) for g in buckets.values()] == [
        ("${var.artifacts_bucket}", "roles/storage.objectViewer")
    ]
    job_user = resources(parse_dir(MODULES_DIR / "iam"))[("google_project_iam_member", "bigquery_job_user")]
    assert "reco_dashboard" in attr(job_user, "for_each")
    assert attr(job_user, "role") == "roles/bigquery.jobUser"
