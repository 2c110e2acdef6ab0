"""The dashboard in the cloud: a second backend of the digdag-ui Ingress under /dashboard, behind IAP, its own
Workload Identity, the environment of its overlay, and the pipeline config mounted like the Jobs'."""

from __future__ import annotations

import json

import pytest
from k8s_helpers import OVERLAYS, PROJECT_ROOT, by_kind, named

from batch.cli import build_parser


def dashboard(docs):
    ns = [d for d in docs if d["metadata"].get("namespace") == "digdag"]
    return {
        "deployment": named(ns, "Deployment", "reco-dashboard"),
        "service": named(ns, "Service", "reco-dashboard"),
        "backend": named(ns, "BackendConfig", "reco-dashboard"),
        "ingress": named(ns, "Ingress", "digdag-ui"),
        "config": named(ns, "ConfigMap", "reco-dashboard-config"),
    }


@pytest.mark.parametrize("env", OVERLAYS)
def test_the_ingress_routes_dashboard_to_the_dashboard_service_behind_iap(rendered, env):
    d = dashboard(rendered[env])
    [rule] = d["ingress"]["spec"]["rules"]
    [path] = [p for p in rule["http"]["paths"] if p["path"] == "/dashboard"]
    assert path["pathType"] == "Prefix"
    assert path["backend"]["service"]["name"] == d["service"]["metadata"]["name"]
    assert path["backend"]["service"]["port"]["name"] in {p["name"] for p in d["service"]["spec"]["ports"]}
    annotations = d["service"]["metadata"]["annotations"]
    assert json.loads(annotations["cloud.google.com/backend-config"]) == {"default": "reco-dashboard"}
    assert json.loads(annotations["cloud.google.com/neg"]) == {"ingress": True}
    spec = d["backend"]["spec"]
    assert spec["iap"] == {"enabled": True}
    container = d["deployment"]["spec"]["template"]["spec"]["containers"][0]
    port = next(p["containerPort"] for p in container["ports"] if p["name"] == "http")
    assert spec["healthCheck"]["port"] == port
    assert spec["healthCheck"]["requestPath"] == container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


@pytest.mark.parametrize("env", OVERLAYS)
def test_the_pod_runs_reco_dashboard_for_its_environment_under_the_ingress_path(rendered, env):
    d = dashboard(rendered[env])
    pod = d["deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    args = build_parser().parse_args(container["args"])
    assert container["command"] == ["reco"] and args.command == "dashboard"
    assert args.env == env and args.host == "0.0.0.0" and args.base_path == "/dashboard"
    assert args.port == next(p["containerPort"] for p in container["ports"])
    assert pod["serviceAccountName"] == "reco-dashboard"
    env_vars = {e["name"]: e for e in container["env"]}
    assert env_vars["DASHBOARD_IAP_AUDIENCE"]["valueFrom"]["configMapKeyRef"]["key"] == "iap_audience"
    assert env_vars["RECO_CONFIG_DIR"]["value"] == "/etc/reco/config"
    assert "reco-batch" in container["image"]  # the batch image: same code, same config


def test_the_dashboard_mounts_every_pipeline_config(rendered):
    pipelines = sorted(p.name for p in (PROJECT_ROOT / "config/pipelines").glob("*.yaml"))
    for env in OVERLAYS:
        d = dashboard(rendered[env])
        pipelines_map = named(
            [m for m in by_kind(rendered[env], "ConfigMap") if m["metadata"].get("namespace") == "digdag"],
            "ConfigMap",
            "reco-dashboard-pipelines",
        )
        files = pipelines_map["data"]
        for name in pipelines:
            assert files.get(name) == (PROJECT_ROOT / "config/pipelines" / name).read_text(), (
                f"config/pipelines/{name} is missing from reco-dashboard-pipelines in "
                "k8s/base/dashboard/kustomization.yaml"
            )
        volumes = {v["name"]: v for v in d["deployment"]["spec"]["template"]["spec"]["volumes"]}
        assert volumes["config"]["configMap"] == {"name": d["config"]["metadata"]["name"]}  # no items list
        assert volumes["pipelines"]["configMap"] == {"name": pipelines_map["metadata"]["name"]}
