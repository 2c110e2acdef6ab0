"""The local runner executes the rendered Job: an Indexed Job becomes N processes, `parallelism` at a time."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from datetime import date
from pathlib import Path

import pytest
from runner_helpers import step_run

from batch.config import EnvironmentConfig, KubernetesConfig, config_dir
from batch.errors import EXIT_BAD_INPUT
from batch.runners.base import StepFailed
from batch.runners.local import PYTHON_RECO, LocalRunner

# Stands in for `reco step ...`: records what it was given, sleeps a little, fails where told to.
FAKE_STEP = r"""
import json, os, sys, time
out = os.environ["FAKE_OUT"]
index = os.environ.get("JOB_COMPLETION_INDEX", "-")
start = time.time()
time.sleep(float(os.environ.get("FAKE_SLEEP", "0.3")))
with open(os.path.join(out, f"shard-{index}.json"), "w") as f:
    json.dump({"argv": sys.argv[1:], "index": index, "start": start, "end": time.time(),
               "config_dir": os.environ.get("RECO_CONFIG_DIR"), "home": os.environ.get("RECO_HOME"),
               "gcp_project": os.environ.get("GCP_PROJECT"), "openblas": os.environ.get("OPENBLAS_NUM_THREADS")}, f)
print(f"shard {index} done")
print("reco: error: shard has no users", file=sys.stderr) if index in os.environ.get("FAKE_FAIL", "").split(",") else None
sys.exit(65 if index in os.environ.get("FAKE_FAIL", "").split(",") else 0)
"""

LOCAL = EnvironmentConfig(
    name="local",
    runner="local",
    kubernetes=KubernetesConfig(overlay="k8s/overlays/dev", namespace="reco-batch"),
)


@pytest.fixture
def fake_step(tmp_path, monkeypatch, reco_home):
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("FAKE_OUT", str(out))
    monkeypatch.delenv("GCP_PROJECT", raising=False)
    real_command = LocalRunner.command
    seen = {}

    def command(self, job):
        seen["argv"] = real_command(self, job)
        return [sys.executable, "-c", FAKE_STEP, *seen["argv"][len(PYTHON_RECO) :]]

    monkeypatch.setattr(LocalRunner, "command", command)
    return out, seen


def records(out: Path) -> list[dict]:
    return sorted((json.loads(p.read_text()) for p in out.glob("shard-*.json")), key=lambda r: r["index"])


def test_indexed_job_runs_every_shard_with_its_index_and_at_most_parallelism_at_once(
    fake_step, capsys, reco_home
):
    out, seen = fake_step
    runner = LocalRunner(LOCAL)
    run = step_run("candidates", env="local", shard_count=5)
    job, docs = runner.build(run)
    assert (
        job["spec"]["completions"] == 5 and job["spec"]["parallelism"] == 2
    )  # the dev overlay's parallelism
    runner.run_job(job, docs)

    recs = records(out)
    assert [r["index"] for r in recs] == ["0", "1", "2", "3", "4"]
    # the container's command, args and env from the manifest, with container-only settings mapped here
    assert seen["argv"][: len(PYTHON_RECO)] == PYTHON_RECO
    assert recs[0]["argv"] == [
        "step",
        "candidates",
        "--pipeline",
        "demo",
        "--date",
        "2026-11-21",
        "--env",
        "local",
        "--shard-count",
        "5",
    ]
    assert recs[0]["config_dir"] == str(config_dir())
    assert recs[0]["home"] == str(reco_home.resolve())  # not the pod's /tmp/reco
    assert recs[0]["openblas"] == "1"  # a plain value from the manifest
    assert recs[0]["gcp_project"] == "PROJECT_ID"  # from the rendered reco-deployment ConfigMap
    # never more than 2 processes at once
    events = sorted([(r["start"], 1) for r in recs] + [(r["end"], -1) for r in recs])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak == 2
    assert "shard 3 done" in capsys.readouterr().out


def test_a_failed_index_fails_the_run_with_one_line(fake_step, monkeypatch):
    monkeypatch.setenv("FAKE_FAIL", "1")
    runner = LocalRunner(LOCAL)
    with pytest.raises(StepFailed) as e:
        runner.run(step_run("candidates", env="local", attempt="a1", shard_count=3))
    # stdout and stderr are two pipes: the tail holds both lines, in whichever order they arrived
    message = str(e.value)
    prefix = "failed indexes 1 of 3: Job reco-demo-candidates-20261121-a1 index 1 exited with code 65: "
    assert message.startswith(prefix)
    assert sorted(message.removeprefix(prefix).split(" | ")) == [
        "reco: error: shard has no users",
        "shard 1 done",
    ]
    assert e.value.exit_code == 65


def test_a_plain_job_is_one_process_without_an_index(fake_step):
    out, _ = fake_step
    LocalRunner(LOCAL).run(step_run("aggregate", env="local"))
    recs = records(out)
    assert [r["index"] for r in recs] == ["-"]
    assert "--shard-count" not in recs[0]["argv"]


def test_a_failed_plain_job_names_the_exit_code(fake_step, monkeypatch):
    monkeypatch.setenv("FAKE_FAIL", "-")
    with pytest.raises(StepFailed) as e:
        LocalRunner(LOCAL).run(step_run("export", env="local"))
    prefix = "exit code 65: Job reco-demo-export-20261121-42 failed: "
    assert str(e.value).startswith(prefix)
    # stdout and stderr arrive on two pipes: their lines interleave in whatever order the threads read them
    assert sorted(str(e.value).removeprefix(prefix).split(" | ")) == [
        "reco: error: shard has no users",
        "shard - done",
    ]


def test_active_deadline_is_enforced(fake_step, monkeypatch):
    monkeypatch.setenv("FAKE_SLEEP", "30")
    runner = LocalRunner(LOCAL)
    job, docs = runner.build(step_run("aggregate", env="local"))
    job["spec"]["activeDeadlineSeconds"] = 1
    t = time.monotonic()
    with pytest.raises(StepFailed) as e:
        runner.run_job(job, docs)
    assert time.monotonic() - t < 10
    assert str(e.value) == (
        "DeadlineExceeded: Job reco-demo-aggregate-20261121-42 ran longer than "
        "activeDeadlineSeconds=1 (local run)"
    )


def test_the_real_command_runs_reco(reco_home, capsys):
    """No monkeypatching: the rendered Job's `reco step` runs here and its failure comes back as one line."""
    with pytest.raises(StepFailed) as e:
        LocalRunner(LOCAL).run(step_run("aggregate", env="local", attempt="real"))
    msg = str(e.value)
    assert msg.startswith("exit code 1: Job reco-demo-aggregate-20261121-real failed:") or msg.startswith(
        "exit code 65: Job reco-demo-aggregate-20261121-real failed:"
    )
    assert "demo_events" in msg  # no demo data in this fresh RECO_HOME: the step says which table is missing


@pytest.mark.parametrize("mode", ["fork", "exec"])
def test_a_forked_child_and_a_fresh_interpreter_run_the_step_alike(small_data, monkeypatch, capsys, mode):
    """RECO_LOCAL_SPAWN=fork runs `reco step` in a fork of this process, exec in a new interpreter:
    the same step, the same output passed through, the same exit code."""
    from batch.config import load_environment
    from batch.storage import ArtifactStore

    monkeypatch.setenv("RECO_LOCAL_SPAWN", mode)
    LocalRunner(LOCAL).run(step_run("aggregate", env="local", attempt=mode))
    out = capsys.readouterr().out
    [line] = [x for x in out.splitlines() if x.startswith('{"step": "aggregate"')]
    assert json.loads(line)["stats"]["users"] > 0
    store = ArtifactStore(load_environment("local").resolved_artifact_root())
    assert store.committed("demo", "interactions", date(2026, 11, 21), step="aggregate")
    earlier = dataclasses.replace(step_run("train", env="local", attempt=mode), session_date="2026-11-20")
    with pytest.raises(StepFailed) as e:  # train on a date without aggregate: the same exit code either way
        LocalRunner(LOCAL).run(earlier)
    assert e.value.exit_code == EXIT_BAD_INPUT and "interactions" in str(e.value)


def test_an_unknown_spawn_mode_is_a_config_error(monkeypatch):
    from batch.errors import ConfigError
    from batch.prefork import spawn_mode

    monkeypatch.setenv("RECO_LOCAL_SPAWN", "thread")
    with pytest.raises(ConfigError, match="RECO_LOCAL_SPAWN"):
        spawn_mode()
