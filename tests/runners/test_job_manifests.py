"""Per-run fields set on the rendered template: name, labels, args, Indexed Job size; errors in one line."""

from __future__ import annotations

import re

import pytest
from runner_helpers import step_run

from batch.errors import ConfigError
from batch.runners import get_runner, manifests
from batch.runners.base import StepRun, summarize_log_lines
from batch.runners.gke import GkeRunner
from batch.runners.local import LocalRunner

DNS = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_job_name_is_deterministic_and_dns_safe():
    a = manifests.job_name("demo", "candidates", "2026-11-21", "1234")
    assert a == "reco-demo-candidates-20261121-1234"
    assert manifests.job_name("demo", "candidates", "2026-11-21", "1234") == a
    assert manifests.job_name("demo", "candidates", "2026-11-21", "1235") != a
    assert (
        manifests.job_name("my_reco", "train", "2026-11-21", "Att_7") == "reco-my-reco-train-20261121-att-7"
    )


def test_long_job_names_are_cut_to_63_with_a_hash_suffix():
    long_a = manifests.job_name("a_very_long_pipeline_name_for_testing", "candidates", "2026-11-21", "x" * 40)
    long_b = manifests.job_name("a_very_long_pipeline_name_for_testing", "candidates", "2026-11-21", "x" * 41)
    for name in (long_a, long_b):
        assert len(name) <= 63 and DNS.match(name), name
        assert re.search(r"-[0-9a-f]{8}$", name)
    assert long_a != long_b
    assert long_a[:40] == long_b[:40]


def test_build_job_sets_run_fields(build):
    job = build(
        StepRun(
            pipeline="demo",
            step="candidates",
            session_date="2026-11-21",
            env="dev",
            attempt="99",
            sharded=True,
            shard_count=8,
            overrides={"candidates.n": "20"},
        )
    )
    meta = job["metadata"]
    assert meta["name"] == "reco-demo-candidates-20261121-99"
    assert meta["namespace"] == "reco-batch"
    assert "reco.io/template" not in meta["labels"]
    assert meta["labels"]["reco.io/pipeline"] == "demo" and meta["labels"]["reco.io/date"] == "2026-11-21"
    assert meta["labels"]["reco.io/attempt"] == "99"
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["reco.io/step"] == "candidates"
    assert "suspend" not in job["spec"]
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == 8
    assert job["spec"]["parallelism"] == 2  # dev overlay: 2 at a time
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "step",
        "candidates",
        "--pipeline",
        "demo",
        "--date",
        "2026-11-21",
        "--env",
        "dev",
        "--shard-count",
        "8",
        "--set",
        "candidates.n=20",
    ]


def test_parallelism_never_exceeds_the_shard_count(build):
    job = build(step_run("candidates", shard_count=1))
    assert job["spec"]["completions"] == 1 and job["spec"]["parallelism"] == 1
    assert job["spec"]["maxFailedIndexes"] <= 1


@pytest.mark.parametrize(
    "step,cls,template",
    [
        ("aggregate", "standard", "reco-step-standard"),
        ("train", "highmem", "reco-step-highmem"),
        ("export", "standard", "reco-step-standard"),
        ("candidates", "standard", "reco-step-standard-sharded"),
        ("related", "gpu", "reco-step-gpu-sharded"),
        ("train", "gpu", "reco-step-gpu"),
    ],
)
def test_each_step_gets_its_resource_class_template(build, step, cls, template):
    job = build(step_run(step, resource_class=cls, shard_count=2))
    assert job["metadata"]["annotations"]["reco.io/template"] == template


def test_unknown_resource_class_names_it_and_the_known_ones(build):
    with pytest.raises(ConfigError) as e:
        build(step_run("aggregate", resource_class="tpu"))
    assert str(e.value) == (
        "unknown resource class 'tpu': the rendered overlay has Job templates for 'compute', 'gpu', 'highmem', 'standard' "
        "(k8s/base/batch/classes/<class>/, label reco.io/resource-class)"
    )
    assert e.value.exit_code == 65  # bad input: not retried


def test_the_resource_class_is_the_callers_choice_for_any_step(build):
    """The class comes with the run (a pipeline's `resources:` entry), not from the step: any step, any class."""
    for cls in ("standard", "highmem", "gpu"):
        for step in ("aggregate", "candidates"):
            job = build(step_run(step, resource_class=cls, shard_count=3))
            pod = job["spec"]["template"]
            assert job["metadata"]["labels"]["reco.io/resource-class"] == cls
            assert pod["metadata"]["labels"]["reco.io/resource-class"] == cls
            assert pod["spec"]["nodeSelector"]["reco.io/node-class"] == cls
            assert (job["spec"].get("completionMode") == "Indexed") == (step == "candidates")
            if step == "candidates":
                assert job["spec"]["completions"] == 3


def test_a_template_missing_from_the_render_is_one_clear_line(dev_docs):
    """An overlay that dropped the sharded variants (say, a patch that deleted them) is named, not a KeyError."""
    docs = [
        d for d in dev_docs if (d.get("metadata", {}).get("labels") or {}).get("reco.io/sharded") != "true"
    ]
    with pytest.raises(ConfigError) as e:
        manifests.build_job(docs, step_run("candidates", shard_count=2), "reco-batch")
    assert str(e.value) == (
        "the rendered overlay has no sharded Job template of resource class 'standard' "
        "(labels reco.io/template=true, reco.io/resource-class, reco.io/sharded=true)"
    )


def test_namespace_mismatch_with_the_environment_config(build):
    with pytest.raises(
        ConfigError,
        match="overlay puts Job templates in namespace 'reco-batch' but kubernetes.namespace is 'other'",
    ):
        build(step_run(), namespace="other")


def test_render_errors_name_the_overlay(tmp_path):
    with pytest.raises(ConfigError, match="no kustomization.yaml"):
        manifests.render_overlay(str(tmp_path))
    (tmp_path / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    with pytest.raises(ConfigError) as e:
        manifests.render_overlay(str(tmp_path))
    assert str(e.value).startswith(f"{tmp_path}: kubectl kustomize failed: ")
    assert "\n" not in str(e.value)


def test_kubectl_comes_from_the_venv():
    import sys
    from pathlib import Path

    assert Path(manifests.kubectl_path()).parent == Path(sys.executable).parent


def test_one_interface_for_both_runners():
    from batch.config import EnvironmentConfig

    assert isinstance(get_runner(EnvironmentConfig(name="local", runner="local")), LocalRunner)
    assert isinstance(get_runner(EnvironmentConfig(name="dev", runner="gke")), GkeRunner)


def test_log_summary_reads_json_records():
    lines = ['{"severity": "INFO", "message": "a"}', "", "plain", '{"not": "a log"}', "{broken"]
    assert summarize_log_lines(lines, count=4) == 'INFO a | plain | {"not": "a log"} | {broken'


def test_a_rendered_overlay_is_reused_until_a_file_it_reads_changes(tmp_path, monkeypatch):
    """`reco submit` renders the overlay each time: the second render of unchanged files runs no kustomize."""
    import shutil
    import subprocess

    from batch.config import PROJECT_ROOT
    from batch.runners import manifests

    monkeypatch.setenv("RECO_HOME", str(tmp_path / "home"))
    shutil.copytree(PROJECT_ROOT / "k8s", tmp_path / "k8s")
    shutil.copytree(PROJECT_ROOT / "config", tmp_path / "config")
    overlay = str(tmp_path / "k8s" / "overlays" / "dev")
    first = manifests.render_overlay(overlay)
    manifests._render.cache_clear()  # a new process: only the cache under RECO_HOME remains
    calls = []
    real_run = subprocess.run
    monkeypatch.setattr(manifests.subprocess, "run", lambda *a, **k: calls.append(a) or real_run(*a, **k))
    assert manifests.render_overlay(overlay) == first
    assert calls == []
    base = tmp_path / "k8s" / "base" / "batch" / "job" / "job.yaml"
    base.write_text(base.read_text().replace("backoffLimit: 3", "backoffLimit: 2"))
    manifests._render.cache_clear()
    changed = manifests.render_overlay(overlay)
    assert len(calls) == 1
    assert changed != first
