"""The GKE runner against an in-process Kubernetes API (tests/runners/fake_kube.py) via the real client.

Job and Pod objects below have the shapes the API returns (status conditions, containerStatuses, failedIndexes).
"""

from __future__ import annotations

import io
import os
import re
import signal
import threading
from datetime import UTC, datetime, timedelta

import pytest
from runner_helpers import gke_env, step_run

from batch.runners.base import StepFailed
from batch.runners.gke import GkeRunner, parse_indexes

NAME = "reco-demo-aggregate-20261121-42"


def runner(fake, timeout_s: int = 900, out=None) -> GkeRunner:
    return GkeRunner(
        gke_env(timeout_s),
        api_client=fake.api_client(),
        watch_timeout_s=1,
        reconnect_delay_s=0.01,
        delete_wait_s=5,
        out=out if out is not None else io.StringIO(),
    )


def cond(ctype: str, reason: str = "", message: str = "", status: str = "True", ago_s: int = 0) -> dict:
    t = (datetime.now(UTC) - timedelta(seconds=ago_s)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "type": ctype,
        "status": status,
        "reason": reason,
        "message": message,
        "lastProbeTime": t,
        "lastTransitionTime": t,
    }


def pod(
    name: str,
    job: str = NAME,
    *,
    phase: str = "Running",
    state: dict | None = None,
    last_state: dict | None = None,
    conditions: list | None = None,
    index: int | None = None,
    image: str = "europe-west1-docker.pkg.dev/p/reco/reco-batch:abc123",
) -> dict:
    labels = {"batch.kubernetes.io/job-name": job, "job-name": job}
    annotations = {}
    if index is not None:
        labels["batch.kubernetes.io/job-completion-index"] = str(index)
        annotations["batch.kubernetes.io/job-completion-index"] = str(index)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "reco-batch",
            "labels": labels,
            "annotations": annotations,
            "creationTimestamp": "2026-11-21T01:00:00Z",
        },
        "spec": {"containers": [{"name": "reco", "image": image}]},
        "status": {
            "phase": phase,
            "conditions": conditions or [cond("PodScheduled")],
            "containerStatuses": [
                {
                    "name": "reco",
                    "image": image,
                    "imageID": "",
                    "ready": phase == "Running",
                    "restartCount": 0,
                    "state": state or {"running": {"startedAt": "2026-11-21T01:00:01Z"}},
                    "lastState": last_state or {},
                }
            ],
        },
    }


def terminated(code: int, reason: str = "Error") -> dict:
    return {
        "terminated": {
            "exitCode": code,
            "reason": reason,
            "startedAt": "2026-11-21T01:00:01Z",
            "finishedAt": "2026-11-21T01:05:00Z",
            "containerID": "containerd://x",
        }
    }


def complete() -> dict:
    return {
        "conditions": [
            cond("SuccessCriteriaMet", "CompletionsReached"),
            cond("Complete", "CompletionsReached"),
        ],
        "succeeded": 1,
        "startTime": "2026-11-21T01:00:00Z",
        "completionTime": "2026-11-21T01:05:00Z",
    }


def failed(reason: str, message: str = "", **extra) -> dict:
    return {
        "conditions": [cond("FailureTarget", reason, message), cond("Failed", reason, message)],
        "startTime": "2026-11-21T01:00:00Z",
        **extra,
    }


LOG = (
    '{"severity": "INFO", "message": "reading interactions"}\n'
    '{"severity": "ERROR", "message": "no events in the window"}\n'
    "reco: error: no events in the window 2026-10-25..2026-11-21\n"
)


def run_failing(fake, build, timeline, run=None, timeout_s: int = 900) -> StepFailed:
    fake.timeline.extend(timeline)
    with pytest.raises(StepFailed) as e:
        runner(fake, timeout_s).run_job(build(run or step_run()))
    msg = str(e.value)
    assert "\n" not in msg
    return e.value


# -- success, adoption --------------------------------------------------------------------------------------


def test_success_creates_the_job_and_streams_its_logs(fake, build):
    fake.timeline.extend(
        [
            {"pods": [pod("p1", state={"running": {}})], "status": {"active": 1}, "logs": {"p1": LOG}},
            {"status": complete(), "pods": [pod("p1", phase="Succeeded", state=terminated(0, "Completed"))]},
        ]
    )
    out = io.StringIO()
    runner(fake, out=out).run_job(build(step_run()))
    posts = fake.calls("POST")
    assert len(posts) == 1
    body = posts[0][3]
    assert body["metadata"]["name"] == NAME
    assert body["metadata"]["labels"]["reco.io/step"] == "aggregate"
    assert "suspend" not in body["spec"]
    assert body["spec"]["template"]["spec"]["containers"][0]["args"][:2] == ["step", "aggregate"]
    assert "reading interactions" in out.getvalue()
    assert not fake.calls("DELETE")


def test_a_retry_adopts_its_running_job_instead_of_creating_another(fake, build):
    fake.add_job(build(step_run()), status={"active": 1})
    fake.timeline.append({"status": complete()})
    runner(fake).run_job(build(step_run()))
    assert fake.calls("POST") == []
    assert not fake.calls("DELETE")


def test_a_retry_after_success_returns_at_once(fake, build):
    fake.add_job(build(step_run()), status=complete())
    runner(fake).run_job(build(step_run()))
    assert fake.calls("POST") == []
    assert not [r for r in fake.requests if r[2].get("watch")]


def test_a_retry_after_a_failure_deletes_the_failed_job_and_runs_it_again(fake, build):
    fake.add_job(
        build(step_run()), status=failed("BackoffLimitExceeded", "Job has reached the backoff limit")
    )
    fake.timeline.append({"status": complete()})
    runner(fake).run_job(build(step_run()))
    deletes = fake.calls("DELETE")
    assert len(deletes) == 1 and deletes[0][3]["propagationPolicy"] == "Background"
    assert len(fake.calls("POST")) == 1


def test_create_conflict_is_adopted(fake, build, monkeypatch):
    """Two submitters racing for the same name: the loser adopts the winner's Job."""
    job = build(step_run())
    r = runner(fake)
    real_read = r.read_job
    calls = {"n": 0}

    def read_job(name):
        calls["n"] += 1
        if calls["n"] == 1:  # the first read misses; then someone else creates it
            fake.add_job(job, status={"active": 1})
            return None
        return real_read(name)

    monkeypatch.setattr(r, "read_job", read_job)
    fake.timeline.append({"status": complete()})
    r.run_job(job)
    assert len(fake.calls("POST")) == 1  # the one that got 409


# -- failure reasons -----------------------------------------------------------------------------------------


def test_oomkilled(fake, build):
    e = run_failing(
        fake,
        build,
        [
            {
                "status": failed(
                    "BackoffLimitExceeded", "Job has reached the specified backoff limit", failed=4
                ),
                "pods": [pod("p1", phase="Failed", state=terminated(137, "OOMKilled"))],
            }
        ],
    )
    assert str(e).startswith(f"OOMKilled: Job {NAME} pod p1 exceeded its memory limit (2Gi)")
    assert e.exit_code == 1


def test_oomkilled_seen_in_last_state_too(fake, build):
    e = run_failing(
        fake,
        build,
        [
            {
                "status": failed("BackoffLimitExceeded", failed=4),
                "pods": [
                    pod("p2", phase="Failed", state=terminated(1), last_state=terminated(137, "OOMKilled"))
                ],
            }
        ],
    )
    assert e.reason == "OOMKilled"


def test_deadline_exceeded(fake, build):
    e = run_failing(
        fake,
        build,
        [
            {
                "status": failed("DeadlineExceeded", "Job was active longer than specified deadline"),
                "pods": [pod("p1", phase="Failed", state=terminated(143))],
                "logs": {"p1": LOG},
            }
        ],
    )
    assert str(e).startswith(f"DeadlineExceeded: Job {NAME} ran longer than activeDeadlineSeconds=7200")
    assert "reco: error: no events in the window" in str(e)


def test_backoff_limit_exceeded_names_the_exit_code_and_log_tail(fake, build):
    e = run_failing(
        fake,
        build,
        [
            {
                "status": failed(
                    "BackoffLimitExceeded", "Job has reached the specified backoff limit", failed=4
                ),
                "pods": [pod("p1", phase="Failed", state=terminated(1))],
                "logs": {"p1": LOG},
            }
        ],
    )
    assert str(e) == (
        f"BackoffLimitExceeded: Job {NAME} failed 4 times (backoffLimit 3); last exit code 1: "
        "INFO reading interactions | ERROR no events in the window | reco: error: no events in the "
        "window 2026-10-25..2026-11-21"
    )
    assert e.exit_code == 1


def test_bad_input_exit_code_is_not_retried_and_passed_on(fake, build):
    e = run_failing(
        fake,
        build,
        [
            {
                "status": failed(
                    "PodFailurePolicy",
                    "Container reco for pod reco-batch/p1 failed with exit code 65 "
                    "matching FailJob rule at index 0",
                ),
                "pods": [pod("p1", phase="Failed", state=terminated(65))],
                "logs": {"p1": LOG},
            }
        ],
    )
    assert str(e).startswith(f"exit code 65 (not retried: pod failure policy): Job {NAME}: INFO reading")
    assert e.exit_code == 65


def test_failed_indexes_of_an_indexed_job(fake, build):
    run = step_run("candidates", shard_count=4)
    name = "reco-demo-candidates-20261121-42"
    e = run_failing(
        fake,
        build,
        [
            {
                "status": failed(
                    "FailedIndexes",
                    "Job has failed indexes",
                    failedIndexes="1,3",
                    completedIndexes="0,2",
                    failed=6,
                ),
                "pods": [
                    pod("c0", name, phase="Succeeded", index=0, state=terminated(0, "Completed")),
                    pod("c1", name, phase="Failed", index=1, state=terminated(65)),
                    pod("c3", name, phase="Failed", index=3, state=terminated(1)),
                ],
                "logs": {"c1": "reco: error: shard 1 has no users\n", "c3": "boom\n"},
            }
        ],
        run=run,
    )
    assert str(e) == (
        f"failed indexes 1,3 of 4: Job {name} index 1 exited with code 65: reco: error: shard 1 has no users"
    )
    assert e.exit_code == 65


@pytest.mark.parametrize("reason", ["ImagePullBackOff", "ErrImagePull"])
def test_image_pull_failure_deletes_the_job(fake, build, reason):
    waiting = {"waiting": {"reason": reason, "message": 'failed to pull image "x": not found'}}
    e = run_failing(
        fake, build, [{"status": {"active": 1}, "pods": [pod("p1", phase="Pending", state=waiting)]}]
    )
    assert str(e) == (
        f"{reason}: Job {NAME} pod p1 cannot pull image "
        f'europe-west1-docker.pkg.dev/p/reco/reco-batch:abc123: failed to pull image "x": not found'
    )
    assert fake.calls("DELETE")[0][3]["propagationPolicy"] == "Background"


def unschedulable_pod(ago_s: int) -> dict:
    msg = "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
    return pod(
        "p1",
        phase="Pending",
        state={"waiting": {"reason": "ContainerCreating"}},
        conditions=[cond("PodScheduled", "Unschedulable", msg, status="False", ago_s=ago_s)],
    )


def test_unschedulable_for_too_long_deletes_the_job(fake, build):
    e = run_failing(
        fake, build, [{"status": {"active": 1}, "pods": [unschedulable_pod(1200)]}], timeout_s=900
    )
    assert re.fullmatch(
        rf"Unschedulable for 120\ds \(limit 900s\): Job {NAME} pod p1: 0/3 nodes are available: "
        r"3 node\(s\) didn't match Pod's node affinity/selector\.",
        str(e),
    )
    assert fake.calls("DELETE")


def test_unschedulable_for_a_while_is_waited_for(fake, build):
    fake.timeline.extend(
        [
            {"status": {"active": 1}, "pods": [unschedulable_pod(60)]},
            {"status": complete(), "pods": [pod("p1", phase="Succeeded", state=terminated(0, "Completed"))]},
        ]
    )
    runner(fake, timeout_s=900).run_job(build(step_run()))
    assert not fake.calls("DELETE")


def test_unexpected_exit_without_known_reason(fake, build):
    e = run_failing(fake, build, [{"status": failed("Evicted?", "weird"), "pods": []}])
    assert str(e) == f"Evicted?: Job {NAME} failed: weird"


# -- watch robustness, deletion, SIGTERM ---------------------------------------------------------------------


def test_watch_reconnects_after_410_and_dropped_connections(fake, build):
    fake.timeline.extend([{"watch_error": 410}, {"drop": True}, {}, {"status": complete()}])
    runner(fake).run_job(build(step_run()))
    watches = [r for r in fake.requests if r[2].get("watch") == ["true"]]
    assert len(watches) == 4
    assert all(w[2]["fieldSelector"] == [f"metadata.name={NAME}"] for w in watches)


def test_job_deleted_by_someone_else(fake, build):
    e = run_failing(fake, build, [{"deleted": True}])
    assert str(e) == f"Job {NAME} was deleted before it finished"


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="signals need the main thread"
)
def test_sigterm_deletes_the_job_and_exits_143(fake, build):
    fake.timeline.extend(
        [{"status": {"active": 1}, "pods": [pod("p1")], "logs": {"p1": "working\n"}}] + [{"block": 0.2}] * 50
    )
    before = signal.getsignal(signal.SIGTERM)
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        with pytest.raises(StepFailed) as e:
            runner(fake).run_job(build(step_run()))
    finally:
        timer.cancel()
    assert str(e.value) == f"terminated by SIGTERM: deleted Job {NAME} in reco-batch"
    assert e.value.exit_code == 143
    deletes = fake.calls("DELETE")
    assert len(deletes) == 1 and deletes[0][3]["propagationPolicy"] == "Background"
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back


def test_parse_indexes():
    assert parse_indexes("1,3-5,9") == [1, 3, 4, 5, 9]
    assert parse_indexes("") == []


# -- the CLI end to end --------------------------------------------------------------------------------------


def test_reco_submit_prints_one_line_and_exits_non_zero(fake, monkeypatch, capsys):
    from batch.cli import main

    monkeypatch.setenv("GCP_PROJECT", "test-project")
    monkeypatch.setattr(GkeRunner, "api_client", lambda self: fake.api_client())
    monkeypatch.setattr(GkeRunner, "__init__", _fast_init(GkeRunner.__init__))
    fake.timeline.append(
        {
            "status": failed("DeadlineExceeded", "too long"),
            "pods": [pod("p1", job="reco-demo-train-20261121-att-7", phase="Failed", state=terminated(143))],
            "logs": {"p1": "training epoch 3\n"},
        }
    )
    rc = main(
        [
            "submit",
            "train",
            "--pipeline",
            "demo",
            "--date",
            "2026-11-21",
            "--env",
            "dev",
            "--attempt",
            "att_7",
            "--retries",
            "0",  # exit 1 would be retried (batch/runners/retry.py); this test reads the one line
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 1
    assert err == (
        "reco: error: DeadlineExceeded: Job reco-demo-train-20261121-att-7 ran longer than "
        "activeDeadlineSeconds=14400; last log lines: training epoch 3"
    )
    body = fake.calls("POST")[0][3]
    assert body["metadata"]["labels"]["reco.io/resource-class"] == "highmem"
    assert body["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "step",
        "train",
        "--pipeline",
        "demo",
        "--date",
        "2026-11-21",
        "--env",
        "dev",
    ]


def _fast_init(real):
    def init(self, env, **kwargs):
        real(self, env, watch_timeout_s=1, reconnect_delay_s=0.01, out=io.StringIO())

    return init
