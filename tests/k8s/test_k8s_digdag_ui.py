"""The Digdag UI behind IAP: Ingress, BackendConfig, FrontendConfig and ManagedCertificate per overlay.

The GKE custom resources are not schema-checked by kubernetes-validate (no schema ships for them, see
test_k8s_validate.GKE_CRD_KINDS), so their fields are checked here against what the GKE Ingress controller
accepts. The names they carry come from each overlay's deployment.env (Terraform outputs of the same names);
tests/terraform/test_terraform_k8s_ui.py checks those values against Terraform.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest
from k8s_helpers import OVERLAYS, PROJECT_ROOT, by_kind, named

from batch.runners.manifests import render_overlay

UI_KEYS = ("digdag_ui_static_ip_name", "digdag_ui_ssl_policy_name", "digdag_ui_hostname")
DNS_NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
GCE_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")

# Fields of the GKE custom resources (cloud.google.com/v1 BackendConfig, networking.gke.io/v1beta1 FrontendConfig,
# networking.gke.io/v1 ManagedCertificate) as documented for the GKE Ingress controller.
BACKEND_CONFIG_FIELDS = {
    "iap",
    "healthCheck",
    "logging",
    "timeoutSec",
    "connectionDraining",
    "sessionAffinity",
    "affinityCookieTtlSec",
    "securityPolicy",
    "cdn",
    "customRequestHeaders",
    "customResponseHeaders",
}
HEALTH_CHECK_FIELDS = {
    "type",
    "port",
    "requestPath",
    "checkIntervalSec",
    "timeoutSec",
    "healthyThreshold",
    "unhealthyThreshold",
}
FRONTEND_CONFIG_FIELDS = {"sslPolicy", "redirectToHttps"}


def deployment_env(env: str) -> dict[str, str]:
    facts = {}
    for line in (PROJECT_ROOT / "k8s/overlays" / env / "deployment.env").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            facts[key.strip()] = value.strip()
    return facts


def ui_objects(docs: list[dict]) -> dict[str, dict]:
    digdag = [d for d in docs if d["metadata"].get("namespace") == "digdag"]
    return {
        "ingress": named(digdag, "Ingress", "digdag-ui"),
        "backend": named(digdag, "BackendConfig", "digdag-ui"),
        "frontend": named(digdag, "FrontendConfig", "digdag-ui"),
        "certificate": named(digdag, "ManagedCertificate", "digdag-ui"),
        "service": named(digdag, "Service", "digdag-server"),
        "server": named(digdag, "Deployment", "digdag-server"),
    }


@pytest.mark.parametrize("env", OVERLAYS)
def test_overlay_carries_the_ui_facts(env):
    facts = deployment_env(env)
    assert set(UI_KEYS) <= set(facts), f"k8s/overlays/{env}/deployment.env lacks {set(UI_KEYS) - set(facts)}"
    assert GCE_NAME.match(facts["digdag_ui_static_ip_name"]), facts
    assert GCE_NAME.match(facts["digdag_ui_ssl_policy_name"]), facts
    assert DNS_NAME.match(facts["digdag_ui_hostname"]), facts


def test_each_overlay_has_its_own_host_and_names():
    for key in UI_KEYS:
        values = [deployment_env(env)[key] for env in OVERLAYS]
        assert len(set(values)) == len(OVERLAYS), f"{key} is shared between overlays: {values}"


@pytest.mark.parametrize("env", OVERLAYS)
def test_ingress_uses_the_terraform_static_ip_certificate_and_ssl_policy(rendered, env):
    facts = deployment_env(env)
    ui = ui_objects(rendered[env])
    ingress = ui["ingress"]
    annotations = ingress["metadata"]["annotations"]
    assert annotations["kubernetes.io/ingress.class"] == "gce"  # external Application Load Balancer
    assert annotations["kubernetes.io/ingress.global-static-ip-name"] == facts["digdag_ui_static_ip_name"]
    assert annotations["networking.gke.io/managed-certificates"] == ui["certificate"]["metadata"]["name"]
    assert annotations["networking.gke.io/v1beta1.FrontendConfig"] == ui["frontend"]["metadata"]["name"]
    assert "tls" not in ingress["spec"], "the certificate is the ManagedCertificate, not a TLS Secret"
    assert "defaultBackend" not in ingress["spec"]
    [rule] = ingress["spec"]["rules"]
    assert rule["host"] == facts["digdag_ui_hostname"]
    paths = {p["path"]: p for p in rule["http"]["paths"]}
    assert set(paths) == {"/", "/dashboard"}  # Digdag, and the dashboard (tests/k8s/test_k8s_dashboard.py)
    path = paths["/"]
    assert path["pathType"] == "Prefix"
    backend = path["backend"]["service"]
    assert backend["name"] == ui["service"]["metadata"]["name"]
    assert backend["port"]["name"] in {p["name"] for p in ui["service"]["spec"]["ports"]}

    assert ui["certificate"]["spec"] == {"domains": [facts["digdag_ui_hostname"]]}

    frontend = ui["frontend"]["spec"]
    assert set(frontend) <= FRONTEND_CONFIG_FIELDS
    assert frontend["sslPolicy"] == facts["digdag_ui_ssl_policy_name"]
    assert frontend["redirectToHttps"] == {"enabled": True, "responseCodeName": "MOVED_PERMANENTLY_DEFAULT"}


@pytest.mark.parametrize("env", OVERLAYS)
def test_the_server_service_is_behind_iap_and_health_checked_on_the_digdag_port(rendered, env):
    ui = ui_objects(rendered[env])
    service = ui["service"]
    annotations = service["metadata"]["annotations"]
    assert json.loads(annotations["cloud.google.com/backend-config"]) == {
        "default": ui["backend"]["metadata"]["name"]
    }
    assert json.loads(annotations["cloud.google.com/neg"]) == {"ingress": True}

    spec = ui["backend"]["spec"]
    assert set(spec) <= BACKEND_CONFIG_FIELDS, set(spec) - BACKEND_CONFIG_FIELDS
    assert spec["iap"] == {"enabled": True}, "IAP with the Google-managed OAuth client: no OAuth secret"
    health = spec["healthCheck"]
    assert set(health) <= HEALTH_CHECK_FIELDS, set(health) - HEALTH_CHECK_FIELDS
    # the port the Service sends to (its named targetPort) is the Digdag container's port
    [port] = [p for p in service["spec"]["ports"] if p["name"] == "http"]
    digdag = ui["server"]["spec"]["template"]["spec"]["containers"][0]
    container_port = next(p["containerPort"] for p in digdag["ports"] if p["name"] == port["targetPort"])
    assert health["type"] == "HTTP" and health["port"] == container_port == 65432
    assert health["requestPath"] == digdag["readinessProbe"]["httpGet"]["path"]


@pytest.mark.parametrize("env", OVERLAYS)
def test_the_load_balancer_reaches_the_server(rendered, env):
    """The server's NetworkPolicy admits the Digdag port from anywhere: the Google front ends and health checks."""
    ui = ui_objects(rendered[env])
    policy = named(by_kind(rendered[env], "NetworkPolicy"), "NetworkPolicy", "digdag-server-api-only")
    assert policy["spec"]["podSelector"]["matchLabels"] == ui["service"]["spec"]["selector"]
    [rule] = policy["spec"]["ingress"]
    assert "from" not in rule
    assert {"port": 65432, "protocol": "TCP"} in rule["ports"]


def test_deployment_env_values_reach_the_ui_objects(tmp_path):
    """Changing deployment.env (what scripts/overlay.py writes from terraform output) changes the UI objects."""
    shutil.copytree(PROJECT_ROOT / "k8s", tmp_path / "k8s")
    shutil.copytree(PROJECT_ROOT / "config", tmp_path / "config")
    env_file = tmp_path / "k8s/overlays/prod/deployment.env"
    env_file.write_text(
        "\n".join(
            line
            for line in env_file.read_text().splitlines()
            if not line.startswith(("digdag_ui_hostname=", "digdag_ui_ssl_policy_name="))
        )
        + "\ndigdag_ui_hostname=digdag.acme.example.org\ndigdag_ui_ssl_policy_name=acme-tls\n"
    )
    ui = ui_objects(render_overlay(str(tmp_path / "k8s/overlays/prod")))
    assert ui["ingress"]["spec"]["rules"][0]["host"] == "digdag.acme.example.org"
    assert ui["certificate"]["spec"]["domains"] == ["digdag.acme.example.org"]
    assert ui["frontend"]["spec"]["sslPolicy"] == "acme-tls"
    assert (
        ui["ingress"]["metadata"]["annotations"]["kubernetes.io/ingress.global-static-ip-name"]
        == "reco-prod-digdag-ui"
    )
