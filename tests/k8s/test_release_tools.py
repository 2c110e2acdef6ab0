"""scripts/overlay.py (pin a digest, configure from terraform outputs) and the release script's plan."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest
from k8s_helpers import PROJECT_ROOT, by_kind, named

from batch.runners.manifests import render_overlay

DIGEST = "sha256:" + "ab" * 32


def _overlay_module():
    spec = importlib.util.spec_from_file_location("overlay_tool", PROJECT_ROOT / "scripts/overlay.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tree(tmp_path):
    shutil.copytree(PROJECT_ROOT / "k8s", tmp_path / "k8s")
    shutil.copytree(PROJECT_ROOT / "config", tmp_path / "config")
    return tmp_path


def test_pin_image_digest_reaches_the_rendered_jobs(tree):
    tool = _overlay_module()
    root = tree / "k8s/overlays"
    before = (root / "prod/kustomization.yaml").read_text()
    ref = f"europe-west1-docker.pkg.dev/acme/reco/reco-batch:0a1b2c@{DIGEST}"
    assert tool.main(["pin-image", "prod", "reco-batch", ref], root) == 0
    after = (root / "prod/kustomization.yaml").read_text()
    assert after.count("#") == before.count("#")  # comments kept
    docs = render_overlay(str(root / "prod"))
    images = {j["spec"]["template"]["spec"]["containers"][0]["image"] for j in by_kind(docs, "Job")}
    assert images == {f"europe-west1-docker.pkg.dev/acme/reco/reco-batch@{DIGEST}"}
    worker = named(docs, "Deployment", "digdag-worker")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert "sha256:0000" in worker  # the other image is untouched


def test_pin_image_tag_in_dev(tree):
    tool = _overlay_module()
    root = tree / "k8s/overlays"
    assert (
        tool.main(
            [
                "pin-image",
                "dev",
                "digdag-worker",
                "europe-west1-docker.pkg.dev/acme/reco/digdag-worker:0a1b2c",
            ],
            root,
        )
        == 0
    )
    docs = render_overlay(str(root / "dev"))
    worker = named(docs, "Deployment", "digdag-worker")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert worker == "europe-west1-docker.pkg.dev/acme/reco/digdag-worker:0a1b2c"


def test_pin_image_errors_are_one_line(tree, capsys):
    tool = _overlay_module()
    root = tree / "k8s/overlays"
    assert tool.main(["pin-image", "dev", "nope", "a/b:c"], root) == 1
    assert tool.main(["pin-image", "qa", "reco-batch", "a/b:c"], root) == 1
    assert tool.main(["pin-image", "dev", "reco-batch", "a/b@sha256:short"], root) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "overlay.py: error: image 'nope' is not in the overlay's images: section"
    assert err[1].startswith("overlay.py: error: ") and err[1].endswith(
        "qa/kustomization.yaml: no such overlay"
    )
    assert (
        err[2]
        == "overlay.py: error: 'a/b@sha256:short' is neither repo/name@sha256:<64 hex> nor repo/name:tag"
    )


def test_configure_from_terraform_outputs(tree):
    tool = _overlay_module()
    root = tree / "k8s/overlays"
    outputs = {
        "project_id": {"value": "acme-reco-prod", "type": "string", "sensitive": False},
        "image_repository": {"value": "europe-west1-docker.pkg.dev/acme-reco-prod/reco"},
        "cloudsql_connection_name": {"value": "acme-reco-prod:europe-west1:digdag-prod"},
        "digdag_ui_static_ip_name": {"value": "reco-prod-digdag-ui"},
        "digdag_ui_ssl_policy_name": {"value": "reco-prod-digdag-ui"},
        "digdag_ui_hostname": {"value": "digdag.acme.example"},
        "ksa_annotations": {
            "value": {
                "reco-batch/reco-batch": "reco-batch@acme-reco-prod.iam.gserviceaccount.com",
                "digdag/digdag-worker": "digdag-worker@acme-reco-prod.iam.gserviceaccount.com",
                "digdag/digdag-server": "digdag-server@acme-reco-prod.iam.gserviceaccount.com",
            }
        },
    }
    out_file = tree / "tf.json"
    out_file.write_text(json.dumps(outputs))
    assert tool.main(["configure", "prod", str(out_file)], root) == 0
    docs = render_overlay(str(root / "prod"))
    sa = named(docs, "ServiceAccount", "reco-batch")
    assert sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"] == (
        "reco-batch@acme-reco-prod.iam.gserviceaccount.com"
    )
    proxy = named(docs, "Deployment", "digdag-server")["spec"]["template"]["spec"]["initContainers"][0]
    cm_name = proxy["env"][0]["valueFrom"]["configMapKeyRef"]["name"]
    cm = next(d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"] == cm_name)
    assert cm["data"]["cloudsql_connection_name"] == "acme-reco-prod:europe-west1:digdag-prod"
    images = {j["spec"]["template"]["spec"]["containers"][0]["image"] for j in by_kind(docs, "Job")}
    assert all(i.startswith("europe-west1-docker.pkg.dev/acme-reco-prod/reco/reco-batch@") for i in images)
    # the Digdag UI's Ingress and certificate follow the Terraform outputs, not the base placeholders
    ingress = named(docs, "Ingress", "digdag-ui")
    assert ingress["spec"]["rules"][0]["host"] == "digdag.acme.example"
    assert named(docs, "ManagedCertificate", "digdag-ui")["spec"]["domains"] == ["digdag.acme.example"]
    del outputs["digdag_ui_hostname"]
    out_file.write_text(json.dumps(outputs))
    assert tool.main(["configure", "prod", str(out_file)], root) != 0


def test_release_plan_tags_pins_applies_and_pushes_with_one_sha():
    env = {**os.environ, "DRY_RUN": "1", "VENV_BIN": os.path.dirname(sys.executable)}
    result = subprocess.run(
        ["bash", str(PROJECT_ROOT / "scripts/release.sh"), "prod"],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=PROJECT_ROOT
    ).stdout.strip()
    plan = result.stdout
    assert f"reco-batch:{sha} " in plan and f"REVISION={sha}" in plan
    assert "pin-image prod reco-batch " in plan and "@sha256:" in plan
    assert "apply --server-side -l 'reco.io/template!=true'" in plan
    assert plan.strip().splitlines()[-2].endswith(f"reco digdag push --env prod --revision {sha}")


def test_release_rejects_an_unknown_env():
    result = subprocess.run(
        ["bash", str(PROJECT_ROOT / "scripts/release.sh"), "qa"],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "release.sh: error: unknown environment 'qa'"
