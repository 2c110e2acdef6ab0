"""Every overlay renders; the rendered manifests pass kubernetes-validate --strict and checkov with no failures."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from k8s_helpers import K8S_VERSION, OVERLAYS, PROJECT_ROOT

SKIP = re.compile(r"^(CKV2?_K8S_\d+)=(.+)$")


def _script(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.skip(f"{name} is not installed in this venv (a dev dependency)")
    return str(path)


def test_every_overlay_renders(rendered):
    assert set(rendered) == set(OVERLAYS)
    for env, docs in rendered.items():
        kinds = {d["kind"] for d in docs}
        assert {
            "Namespace",
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "ConfigMap",
            "Job",
            "Deployment",
            "Service",
            "NetworkPolicy",
        } <= kinds, env


def test_kubernetes_validate_strict(rendered_dir):
    files = sorted(str(p) for p in rendered_dir.glob("*.yaml"))
    result = subprocess.run(
        [_script("kubernetes-validate"), "--strict", "-k", K8S_VERSION, "--quiet", *files],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_validate_catches_a_broken_manifest(tmp_path):
    """The validator really checks: an unknown field fails under --strict."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: x}\nspec:\n  backofLimit: 3\n"
        "  template: {spec: {restartPolicy: Never, containers: [{name: c, image: i}]}}\n"
    )
    result = subprocess.run(
        [_script("kubernetes-validate"), "--strict", "-k", K8S_VERSION, "--quiet", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0


@pytest.fixture(scope="module")
def checkov_report(rendered_dir) -> dict:
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "LOG_LEVEL": "ERROR"}
    cmd = [
        _script("checkov"),
        "--framework",
        "kubernetes",
        "-d",
        str(rendered_dir),
        "--compact",
        "--quiet",
        "--skip-download",
        "-o",
        "json",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=PROJECT_ROOT)
    assert result.returncode in (0, 1), f"checkov crashed ({result.returncode}):\n{result.stderr[-4000:]}"
    out = result.stdout
    data = json.loads(
        out[out.find("{") :]
        if out.lstrip().startswith("{")
        else out[min(i for i in (out.find("{"), out.find("[")) if i >= 0) :]
    )
    reports = data if isinstance(data, list) else [data]
    assert len(reports) == 1
    return reports[0]


def test_checkov_has_no_failed_checks(checkov_report):
    results = checkov_report.get("results") or {}
    failed = [
        f"{r['check_id']} {r['resource']} ({r.get('file_path')})" for r in results.get("failed_checks", [])
    ]
    assert not failed, "checkov failed checks:\n" + "\n".join(failed)
    assert checkov_report["summary"]["passed"] > 500  # it really looked at the manifests


def test_every_checkov_skip_is_justified_inline(rendered):
    skips = 0
    for docs in rendered.values():
        for doc in docs:
            for key, value in ((doc.get("metadata") or {}).get("annotations") or {}).items():
                if key.startswith("checkov.io/skip"):
                    m = SKIP.match(value)
                    assert m and len(m.group(2).strip()) >= 20, f"{doc['metadata']['name']}: {key}: {value!r}"
                    skips += 1
    assert skips > 0
