"""One Job template, one small kustomization per resource class, one for the sharded shape; no near-copies.

k8s/base/batch/job/ holds the only Job; classes/<class>/ renders it with the class's patch, sharded/ renders every
class again as an Indexed Job. These tests pin that shape: a rendered variant differs from the template only where
its own patch says, a new class is picked up by the runner without code changes, and the files stay small.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from k8s_helpers import JOB_CLASSES, K8S_VERSION, OVERLAYS, PROJECT_ROOT, built_jobs, class_dirs

from batch.errors import ConfigError
from batch.runners import manifests
from batch.runners.base import StepRun

BATCH = PROJECT_ROOT / "k8s/base/batch"
MAX_SHARED_LINES = 20  # the four former near-copies shared 91 of their ~115 lines
MAX_VARIANT_LINES = 40  # a class (or the shape) is a small patch, not a template


def listed_classes(root: Path = JOB_CLASSES) -> list[str]:
    return yaml.safe_load((root / "kustomization.yaml").read_text())["resources"]


def unlisted_classes(root: Path = JOB_CLASSES) -> list[str]:
    """Class directories that classes/kustomization.yaml leaves out (kustomize cannot glob them)."""
    return sorted(set(class_dirs(root)) - set(listed_classes(root)))


def flatten(node, prefix: str = "") -> dict[str, object]:
    """JSON-pointer paths of every leaf (empty containers count as leaves)."""
    if isinstance(node, dict) and node:
        out = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}/{str(key).replace('~', '~0').replace('/', '~1')}"))
        return out
    if isinstance(node, list) and node:
        out = {}
        for i, value in enumerate(node):
            out.update(flatten(value, f"{prefix}/{i}"))
        return out
    return {prefix: node}


def changed_paths(before: dict, after: dict) -> set[str]:
    a, b = flatten(before), flatten(after)
    return {p for p in a.keys() | b.keys() if a.get(p, object()) != b.get(p, object())}


def patch_paths(kustomization: Path) -> list[str]:
    """The paths a kustomization's JSON6902 patches touch ("/-" appends: the whole list may change)."""
    paths = []
    for patch in yaml.safe_load(kustomization.read_text()).get("patches") or []:
        for op in yaml.safe_load(patch["patch"]):
            if op["op"] != "test":
                paths.append(op["path"].removesuffix("/-"))
    return paths


def label_paths(kustomization: Path) -> list[str]:
    paths = []
    for entry in yaml.safe_load(kustomization.read_text()).get("labels") or []:
        for key in entry["pairs"]:
            escaped = key.replace("~", "~0").replace("/", "~1")
            paths.append(f"/metadata/labels/{escaped}")
            if entry.get("includeTemplates"):
                paths.append(f"/spec/template/metadata/labels/{escaped}")
    return paths


def only_job(path: Path) -> dict:
    [job] = [d for d in manifests.render_overlay(str(path)) if d["kind"] == "Job"]
    return job


def assert_within(changed: set[str], allowed: list[str], what: str) -> None:
    stray = sorted(p for p in changed if not any(p == a or p.startswith(a + "/") for a in allowed))
    assert not stray, f"{what} changes fields its patch does not name: {stray}"


def test_there_is_one_job_template():
    files_with_a_job = []
    for path in sorted(PROJECT_ROOT.joinpath("k8s").rglob("*.yaml")):
        if any(d.get("kind") == "Job" for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)):
            files_with_a_job.append(path.relative_to(PROJECT_ROOT).as_posix())
    # one template for every step of the graph; the `reco tune` workers (an Indexed Job with the Cloud SQL proxy
    # sidecar, docs/tuning.md) are a different workload with their own
    assert files_with_a_job == ["k8s/base/batch/job/job.yaml", "k8s/base/tuning/job-tune-worker.yaml"]


def test_no_near_copies_under_k8s_base_batch():
    def lines(path: Path) -> set[str]:
        return {
            s for s in (line.strip() for line in path.read_text().splitlines()) if s and not s.startswith("#")
        }

    files = sorted(BATCH.rglob("*.yaml"))
    for a, b in itertools.combinations(files, 2):
        shared = lines(a) & lines(b)
        assert len(shared) <= MAX_SHARED_LINES, f"{a} and {b} share {len(shared)} lines: a near-copy?"
    for path in [*JOB_CLASSES.glob("*/kustomization.yaml"), BATCH / "sharded/kustomization.yaml"]:
        assert len(path.read_text().splitlines()) <= MAX_VARIANT_LINES, f"{path} is no longer a small patch"


def test_every_class_directory_is_listed():
    assert class_dirs() == sorted(listed_classes()), (
        f"k8s/base/batch/classes/kustomization.yaml leaves out {unlisted_classes()} "
        f"or lists classes without a directory {sorted(set(listed_classes()) - set(class_dirs()))}"
    )
    assert {"standard", "highmem", "gpu"} <= set(class_dirs())


@pytest.mark.parametrize("cls", class_dirs())
def test_a_class_differs_from_the_template_only_in_its_patch(cls):
    template = only_job(BATCH / "job")
    variant = only_job(JOB_CLASSES / cls)
    own = JOB_CLASSES / cls / "kustomization.yaml"
    assert variant["metadata"]["name"] == f"{template['metadata']['name']}-{cls}"
    assert variant["metadata"]["labels"]["reco.io/resource-class"] == cls
    assert variant["spec"]["template"]["metadata"]["labels"]["reco.io/resource-class"] == cls
    assert_within(
        changed_paths(template, variant),
        ["/metadata/name", *label_paths(own), *patch_paths(own)],
        f"class {cls}",
    )


def test_the_sharded_shape_differs_from_each_class_only_in_its_patch():
    sharded_dir = BATCH / "sharded"
    plain = {
        j["metadata"]["name"]: j for j in manifests.job_templates(manifests.render_overlay(str(JOB_CLASSES)))
    }
    sharded = manifests.job_templates(manifests.render_overlay(str(sharded_dir)))
    assert sorted(j["metadata"]["name"] for j in sharded) == sorted(f"{n}-sharded" for n in plain)
    own = sharded_dir / "kustomization.yaml"
    for job in sharded:
        base = plain[job["metadata"]["name"].removesuffix("-sharded")]
        assert job["spec"]["completionMode"] == "Indexed"
        assert job["spec"]["podFailurePolicy"]["rules"][0]["action"] == "FailIndex"
        assert_within(
            changed_paths(base, job),
            ["/metadata/name", *label_paths(own), *patch_paths(own)],
            f"sharded {job['metadata']['name']}",
        )


def test_a_new_resource_class_is_one_directory(tmp_path):
    """Add classes/tpu/ (plus its line in the list) in a copy of the tree: the runner knows it, plain and sharded."""
    shutil.copytree(PROJECT_ROOT / "k8s", tmp_path / "k8s")
    shutil.copytree(PROJECT_ROOT / "config", tmp_path / "config")
    classes = tmp_path / "k8s/base/batch/classes"
    (classes / "tpu").mkdir()
    (classes / "tpu/kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        "resources: [../../job]\n"
        "nameSuffix: -tpu\n"
        "labels:\n"
        "  - pairs: {reco.io/resource-class: tpu}\n"
        "    includeTemplates: true\n"
        "patches:\n"
        "  - target: {kind: Job}\n"
        "    patch: |-\n"
        "      - {op: add, path: /spec/template/spec/nodeSelector, value: {reco.io/node-class: tpu}}\n"
        "      - op: add\n"
        "        path: /spec/template/spec/containers/0/resources\n"
        "        value: {requests: {cpu: '2', memory: 8Gi}, limits: {cpu: '2', memory: 8Gi}}\n"
    )
    assert unlisted_classes(classes) == ["tpu"]  # forgetting the list line is caught (test above)
    listing = classes / "kustomization.yaml"
    listing.write_text(listing.read_text() + "  - tpu\n")
    assert unlisted_classes(classes) == []

    docs = manifests.render_overlay(str(tmp_path / "k8s/overlays/prod"))
    assert "tpu" in manifests.resource_classes(docs)
    for step, sharded in (("train", False), ("candidates", True)):
        run = StepRun(
            pipeline="demo",
            step=step,
            session_date="2026-11-21",
            env="prod",
            attempt="1",
            resource_class="tpu",
            sharded=sharded,
            shard_count=16 if sharded else 1,
        )
        job = manifests.build_job(docs, run, "reco-batch")
        pod = job["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == {"reco.io/node-class": "tpu"}
        assert pod["containers"][0]["resources"]["limits"] == {"cpu": "2", "memory": "8Gi"}
        assert pod["containers"][0]["image"].endswith("@sha256:" + "0" * 64)  # the overlay still applies
        if sharded:
            assert job["spec"]["completions"] == 16 and job["spec"]["parallelism"] == 8  # prod's parallelism


def test_an_unknown_class_is_a_config_error_listing_what_the_files_define(rendered):
    with pytest.raises(ConfigError) as e:
        manifests.select_template(rendered["dev"], "highcpu", sharded=True)
    message = str(e.value)
    assert message.startswith("unknown resource class 'highcpu': ")
    for cls in class_dirs():
        assert repr(cls) in message


def test_the_jobs_of_every_class_validate_strictly(rendered, tmp_path):
    validator = Path(sys.executable).parent / "kubernetes-validate"
    if not validator.exists():
        pytest.skip("kubernetes-validate is not installed in this venv (a dev dependency)")
    files = []
    for env in OVERLAYS:
        jobs = built_jobs(rendered[env], env)
        assert len(jobs) == 2 * len(class_dirs())
        assert len({j["metadata"]["name"] for j in jobs}) == len(jobs)
        path = tmp_path / f"{env}-jobs.yaml"
        path.write_text(yaml.safe_dump_all(jobs, sort_keys=False))
        files.append(str(path))
    result = subprocess.run(
        [str(validator), "--strict", "-k", K8S_VERSION, "--quiet", *files],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARN" not in result.stdout + result.stderr
