"""Terraform's Digdag UI names (terraform/modules/iap) match what the k8s overlays put in the Ingress.

The chain is: Terraform output `digdag_ui_<x>` of envs/<env> (forwarding modules/platform's, which is
modules/iap's) -> key `digdag_ui_<x>` of
k8s/overlays/<env>/deployment.env (scripts/overlay.py configure) -> the replacements of
k8s/overlays/components/deployment -> the field of k8s/base/digdag/ui.yaml. Each link is checked here from the
files, without rendering (tests/k8s checks the rendered result). The static IP and SSL policy names are computed
from the HCL (`${var.name_prefix}-digdag-ui`, name_prefix `reco-${var.settings.environment}` in modules/platform,
environment from the settings of envs/<env>/terraform.tfvars); the host is organisation specific (project.auto.tfvars, never committed), so for it only the
plumbing and the shape are checked.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from tf_helpers import (
    ENVS,
    MODULES_DIR,
    PLATFORM_DIR,
    REPO_ROOT,
    attr,
    env_dir,
    load_hcl,
    load_settings,
    named_blocks,
    parse_dir,
    platform_calls,
    resources,
)

OVERLAYS = REPO_ROOT / "k8s" / "overlays"
COMPONENT = OVERLAYS / "components" / "deployment" / "kustomization.yaml"
UI_MANIFEST = REPO_ROOT / "k8s" / "base" / "digdag" / "ui.yaml"
DNS_NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")

# deployment.env key -> (iap module output, where k8s uses it: kind, field path of the replacement target)
UI_FACTS = {
    "digdag_ui_static_ip_name": (
        "static_ip_name",
        {("Ingress", "metadata.annotations.[kubernetes.io/ingress.global-static-ip-name]")},
    ),
    "digdag_ui_ssl_policy_name": ("ssl_policy_name", {("FrontendConfig", "spec.sslPolicy")}),
    "digdag_ui_hostname": (
        "hostname",
        {("Ingress", "spec.rules.0.host"), ("ManagedCertificate", "spec.domains.0")},
    ),
}


def deployment_env(env: str) -> dict[str, str]:
    path = OVERLAYS / env / "deployment.env"
    if not path.is_file():
        pytest.skip(f"{path.relative_to(REPO_ROOT)} does not exist (the k8s overlays are written separately)")
    facts = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            facts[key.strip()] = value.strip()
    return facts


def _interpolate(template: str, values: dict[str, str]) -> str:
    """Evaluate a string template made of literals and ${var.x} references only."""

    def sub(match: re.Match[str]) -> str:
        ref = match.group(1)
        assert ref in values, f"cannot evaluate ${{{ref}}} in {template!r}"
        return values[ref]

    return re.sub(r"\$\{([a-z_.]+)\}", sub, template)


def expected_iap_names(env: str) -> dict[str, str]:
    """Static IP and SSL policy names that `terraform apply` in envs/<env> creates, computed from the HCL."""
    assert attr(named_blocks(parse_dir(env_dir(env)), "module")["platform"], "settings") == "${var.settings}"
    iap_call = platform_calls()["iap"]
    name_prefix = _interpolate(
        attr(iap_call, "name_prefix"), {"var.settings.environment": load_settings(env)["environment"]}
    )
    iap = resources(parse_dir(MODULES_DIR / "iap"))
    address = attr(iap[("google_compute_global_address", "digdag_ui")], "name")
    policy = attr(iap[("google_compute_ssl_policy", "digdag_ui")], "name")
    outputs = named_blocks(parse_dir(MODULES_DIR / "iap"), "output")
    assert attr(outputs["static_ip_name"], "value") == "${google_compute_global_address.digdag_ui.name}"
    assert attr(outputs["ssl_policy_name"], "value") == "${google_compute_ssl_policy.digdag_ui.name}"
    return {
        "digdag_ui_static_ip_name": _interpolate(address, {"var.name_prefix": name_prefix}),
        "digdag_ui_ssl_policy_name": _interpolate(policy, {"var.name_prefix": name_prefix}),
    }


@pytest.mark.parametrize("env", ENVS)
def test_overlay_static_ip_and_ssl_policy_names_are_the_terraform_ones(env: str) -> None:
    facts = deployment_env(env)
    expected = expected_iap_names(env)
    assert expected == {"digdag_ui_static_ip_name": f"reco-{env}-digdag-ui"} | {
        "digdag_ui_ssl_policy_name": f"reco-{env}-digdag-ui"
    }
    for key, value in expected.items():
        assert facts.get(key) == value, (
            f"k8s/overlays/{env}/deployment.env: {key}={facts.get(key)!r}, Terraform creates {value!r}"
        )


@pytest.mark.parametrize("env", ENVS)
def test_overlay_hostname_is_the_terraform_variable(env: str) -> None:
    facts = deployment_env(env)
    assert DNS_NAME.match(facts.get("digdag_ui_hostname", "")), facts
    platform_call = named_blocks(parse_dir(env_dir(env)), "module")["platform"]
    assert attr(platform_call, "digdag_ui_hostname") == "${var.digdag_ui_hostname}"
    assert attr(platform_calls()["iap"], "hostname") == "${var.digdag_ui_hostname}"
    iap_outputs = named_blocks(parse_dir(MODULES_DIR / "iap"), "output")
    assert attr(iap_outputs["hostname"], "value") == "${var.hostname}"
    example = load_hcl(env_dir(env) / "project.auto.tfvars.example")
    assert DNS_NAME.match(attr(example, "digdag_ui_hostname"))


@pytest.mark.parametrize("env", ENVS)
def test_every_deployment_env_key_is_a_terraform_output(env: str) -> None:
    """scripts/overlay.py configure copies outputs to the keys of the same name (gsa_domain is derived)."""
    facts = deployment_env(env)
    outputs = named_blocks(parse_dir(env_dir(env)), "output")
    missing = set(facts) - {"gsa_domain"} - set(outputs)
    assert not missing, f"envs/{env}/outputs.tf lacks outputs for deployment.env keys {sorted(missing)}"
    assert "ksa_annotations" in outputs  # gsa_domain's source
    platform_outputs = named_blocks(parse_dir(PLATFORM_DIR), "output")
    for key, (iap_output, _) in UI_FACTS.items():
        assert key in facts, f"k8s/overlays/{env}/deployment.env lacks {key}"
        assert attr(outputs[key], "value") == f"${{module.platform.{key}}}", key
        assert attr(platform_outputs[key], "value") == f"${{module.iap.{iap_output}}}", key


def _replacement_targets() -> dict[str, set[tuple[str, str]]]:
    if not COMPONENT.is_file():
        pytest.skip(f"{COMPONENT.relative_to(REPO_ROOT)} does not exist")
    component = yaml.safe_load(COMPONENT.read_text())
    out: dict[str, set[tuple[str, str]]] = {}
    for replacement in component.get("replacements", []):
        source = replacement["source"]
        if source.get("name") != "digdag-deployment":
            continue
        key = source["fieldPath"].removeprefix("data.")
        for target in replacement["targets"]:
            for path in target["fieldPaths"]:
                out.setdefault(key, set()).add((target["select"]["kind"], path))
    return out


def _get(doc: dict[str, Any], path: str) -> Any:
    node: Any = doc
    for part in re.findall(r"\[[^\]]+\]|[^.]+", path):
        part = part.strip("[]")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def test_k8s_feeds_each_terraform_ui_output_into_the_right_field() -> None:
    targets = _replacement_targets()
    for key, (_, fields) in UI_FACTS.items():
        assert targets.get(key) == fields, f"{key} is copied to {targets.get(key)}, expected {fields}"
    docs = {d["kind"]: d for d in yaml.safe_load_all(UI_MANIFEST.read_text()) if isinstance(d, dict)}
    for _, fields in UI_FACTS.values():
        for kind, path in fields:
            assert kind in docs, f"{UI_MANIFEST.relative_to(REPO_ROOT)} has no {kind}"
            _get(docs[kind], path)  # the field exists in base, so the replacement has a target


def test_iap_is_the_only_way_in_on_both_sides() -> None:
    """Terraform grants IAP access to one group; the k8s BackendConfig enables IAP without an OAuth secret."""
    iap = resources(parse_dir(MODULES_DIR / "iap"))
    assert attr(iap[("google_iap_web_iam_member", "digdag_ui")], "role") == "roles/iap.httpsResourceAccessor"
    policy = iap[("google_compute_ssl_policy", "digdag_ui")]
    assert attr(policy, "min_tls_version") == "TLS_1_2"
    docs = {d["kind"]: d for d in yaml.safe_load_all(UI_MANIFEST.read_text()) if isinstance(d, dict)}
    assert docs["BackendConfig"]["spec"]["iap"] == {"enabled": True}
    assert docs["FrontendConfig"]["spec"]["redirectToHttps"]["enabled"] is True


def test_cross_check_catches_a_wrong_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check can fail: a deployment.env naming another static IP is reported."""
    (tmp_path / "dev").mkdir()
    text = (OVERLAYS / "dev" / "deployment.env").read_text()
    (tmp_path / "dev" / "deployment.env").write_text(
        text.replace("digdag_ui_static_ip_name=reco-dev-digdag-ui", "digdag_ui_static_ip_name=reco-digdag-ui")
    )
    monkeypatch.setattr(sys.modules[__name__], "OVERLAYS", tmp_path)
    with pytest.raises(AssertionError, match="Terraform creates 'reco-dev-digdag-ui'"):
        test_overlay_static_ip_and_ssl_policy_names_are_the_terraform_ones("dev")
