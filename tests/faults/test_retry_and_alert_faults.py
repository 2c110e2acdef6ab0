"""Retries only for what can succeed again, one Slack message per failure, and stopping the local Digdag runner.

Exit codes 2, 3 and 65 are deterministic: `reco submit` never retries them, the workflows carry no Digdag `_retry`
on steps (`reco digdag check` refuses one) and the Job template fails at once on them. A gate's failure is alerted
by the gate alone. SIGTERM to `reco digdag run` stops every process its tasks started and fails the attempt.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import pytest

from batch.alerts import sent as ledger
from batch.cli import main
from batch.config import load_environment
from batch.digdag.check import check_paths
from batch.digdag.local import LocalRunner, read_attempt_record, run_workflow
from batch.digdag.workflow import load_workflow
from batch.errors import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_FAILURE, EXIT_LOCKED, EXIT_USAGE
from batch.runners.base import Runner, StepFailed, StepRun
from batch.runners.retry import RetryPolicy, run_with_retries
from batch.storage import ArtifactStore

SESSION = date(2026, 11, 21)
RUN = StepRun(pipeline="demo", step="train", session_date="2026-11-21", env="local", attempt="7")


class Scripted(Runner):
    """A runner whose tries fail with the given exit codes (0: succeeds)."""

    def __init__(self, *codes, reason="ExitCode"):
        self.codes, self.reason, self.tries = list(codes), reason, 0

    def run(self, run):
        code = self.codes[min(self.tries, len(self.codes) - 1)]
        self.tries += 1
        if code:
            raise StepFailed(self.reason, f"exit code {code}", exit_code=code)


# -- reco submit's retry policy ----------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [EXIT_USAGE, EXIT_CHECK_FAILED, EXIT_BAD_INPUT])
def test_deterministic_failures_are_tried_once(code):
    runner, waits = Scripted(code, 0), []
    with pytest.raises(StepFailed) as e:
        run_with_retries(runner, RUN, RetryPolicy(retries=2, interval_s=30), sleep=waits.append)
    assert e.value.exit_code == code and runner.tries == 1 and waits == []


@pytest.mark.parametrize("code", [EXIT_FAILURE, EXIT_LOCKED, 143])
def test_retryable_failures_are_retried_with_backoff(code):
    runner, waits = Scripted(code, code, 0), []
    assert run_with_retries(runner, RUN, RetryPolicy(retries=2, interval_s=30), sleep=waits.append) == 3
    assert waits == [30, 60]


def test_retries_give_up_after_the_limit_with_the_last_code():
    runner, waits = Scripted(EXIT_FAILURE), []
    with pytest.raises(StepFailed) as e:
        run_with_retries(
            runner, RUN, RetryPolicy(retries=2, interval_s=100, max_interval_s=150), sleep=waits.append
        )
    assert e.value.exit_code == EXIT_FAILURE and runner.tries == 3 and waits == [100, 150]


def test_a_stop_request_is_not_retried():
    runner = Scripted(143, 0, reason="Terminated")
    with pytest.raises(StepFailed):
        run_with_retries(runner, RUN, RetryPolicy(retries=2, interval_s=0), sleep=lambda s: None)
    assert runner.tries == 1


def test_job_failure_codes_that_name_the_kind_pass_through():
    for code in (EXIT_USAGE, EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_LOCKED, 143):
        assert StepFailed("ExitCode", "x", exit_code=code).exit_code == code
    assert StepFailed("OOMKilled", "x", exit_code=137).exit_code == EXIT_FAILURE


@pytest.mark.parametrize(
    "exits, code, runs", [("65", 65, 1), ("3", 3, 1), ("2", 2, 1), ("1,0", 0, 2), ("1", 1, 3)]
)
def test_reco_submit_runs_the_step_again_only_when_it_can_succeed(
    reco_home, fake_step, capsys, exits, code, runs
):
    runs_file = fake_step(exits)
    argv = ["submit", "aggregate", "--pipeline", "demo", "--date", "2026-11-21", "--attempt", "5"]
    assert main([*argv, "--retry-interval", "0"]) == code
    assert len(runs_file.read_text().splitlines()) == runs
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if code:
        assert err.strip().splitlines()[-1].startswith("reco: error: exit code")


# -- the workflows and the Job template --------------------------------------------------------------------------


def test_workflows_have_no_digdag_retry_on_steps_and_check_refuses_one(write_dig):
    from batch.cli import build_parser
    from batch.config import PROJECT_ROOT

    wf = load_workflow(PROJECT_ROOT / "digdag" / "demo.dig")
    assert all(t.retry is None for t in wf.root.walk() if t.operator == "sh" and "reco submit" in t.command)
    write_dig(
        "w.dig",
        "_export:\n  pipeline: demo\n+aggregate:\n  _retry: 2\n"
        "  sh>: reco submit aggregate --pipeline ${pipeline} --date ${session_date} --env ${env}\n",
    )
    report = check_paths([str(write_dig.dir)], parser=build_parser(), env="local")
    assert any(
        "_retry on a `reco submit` task" in str(p) and "+w+aggregate" in str(p) for p in report.problems
    )


# -- one Slack message per failure --------------------------------------------------------------------------------

NOTIFY = """
_error:
  sh>: reco notify failure --pipeline demo --date ${session_date} --env local --attempt ${attempt_id}
  _env:
    RECO_ERROR_MESSAGE: ${error.message}
+aggregate:
  sh>: reco submit aggregate --pipeline demo --date ${session_date} --env local --attempt ${attempt_id} --retry-interval 0 SET
+train:
  sh>: touch train_ran.txt
"""


def test_a_gate_failure_sends_one_message_the_gates(small_data, slack, write_dig):
    wf = write_dig("gate.dig", NOTIFY.replace("SET", "--set checks.data.distinct_users.min=100000"))
    result = run_workflow(wf, SESSION, {"env": "local"}, out=open(os.devnull, "w"))
    assert not result.success and result.failed_task == "+gate+aggregate"
    assert "code 3" in result.error
    assert not (write_dig.dir / "train_ran.txt").exists()
    assert len(slack.bodies) == 1, [b["text"] for b in slack.bodies]
    assert "data checks failed" in slack.bodies[0]["text"]
    assert "distinct_users" in json.dumps(slack.bodies[0])
    store = ArtifactStore(load_environment("local").resolved_artifact_root())
    [alert] = ledger.alerts_for(store, "demo", SESSION, result.attempt_id)
    assert alert["source"] == "data checks"


def test_a_failure_no_gate_alerted_gets_the_generic_message_once(reco_home, slack, write_dig):
    """A fresh home: no events table, exit 65 from the step, not retried, alerted by _error. An alert record left
    from before (local attempt ids count up per $RECO_HOME, so "1" again) must not silence it."""
    store = ArtifactStore(load_environment("local").resolved_artifact_root())
    ledger.record_alert(store, "demo", SESSION, source="data checks", summary="old", attempt="1")
    time.sleep(1.1)  # records and task starts have one-second resolution
    wf = write_dig("nodata.dig", NOTIFY.replace("SET", ""))
    result = run_workflow(wf, SESSION, {"env": "local"}, out=open(os.devnull, "w"))
    assert result.attempt_id == "1"
    assert not result.success and "code 65" in result.error
    assert len(slack.bodies) == 1
    assert slack.bodies[0]["text"] == "reco demo 2026-11-21 failed in local at +nodata+aggregate"
    record = read_attempt_record(result.attempt_id)
    [task] = [t for t in record["tasks"] if t["fullName"] == "+nodata+aggregate"]
    assert task["retries"] == 0
    assert "retry 1/" not in "\n".join(task["tail"])


# -- stopping the local Digdag runner ----------------------------------------------------------------------------

TREE = r"""
import os, subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
open("pids.txt", "w").write(f"{os.getpid()} {grandchild.pid}\n")
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def _wait_for(path: Path, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().endswith("\n"):
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{path} did not appear")


def _stop_workflow(write_dig, tree: str) -> Path:
    (write_dig.dir / "tree.py").write_text(tree)
    return write_dig(
        "stop.dig",
        f"""
_error:
  sh>: touch error_ran.txt
+long:
  _retry: 2
  sh>: {sys.executable} tree.py
+after:
  sh>: touch after.txt
""",
    )


def test_sigterm_to_reco_digdag_run_stops_its_children_and_fails_the_attempt(reco_home, write_dig):
    wf = _stop_workflow(write_dig, TREE)
    runner = subprocess.Popen(
        [sys.executable, "-c", "import sys; from batch.cli import main; sys.exit(main())"]
        + ["digdag", "run", str(wf), "--session-date", "2026-11-21"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        pids = [int(p) for p in _wait_for(write_dig.dir / "pids.txt").split()]
        assert all(_alive(p) for p in pids)
        runner.send_signal(signal.SIGTERM)
        out, _ = runner.communicate(timeout=30)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 128 + signal.SIGTERM, out
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids), "the task's processes outlived the runner"
    assert not (write_dig.dir / "after.txt").exists() and not (write_dig.dir / "error_ran.txt").exists()
    record = read_attempt_record("1")
    assert record["done"] and not record["success"] and record["stoppedBy"] == "SIGTERM"
    [long] = [t for t in record["tasks"] if t["fullName"] == "+stop+long"]
    assert long["state"] == "error" and long["retries"] == 0 and "stopped by SIGTERM" in long["error"]
    assert "attempt stopped by SIGTERM" in out and "Traceback" not in out


def test_a_task_that_ignores_sigterm_is_killed_after_the_grace_period(reco_home, write_dig):
    stubborn = "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + TREE.replace(
        '[sys.executable, "-c", "import time; time.sleep(120)"]',
        '[sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"]',
    )
    wf = _stop_workflow(write_dig, stubborn)
    runner = LocalRunner(load_workflow(wf), SESSION, {}, out=open(os.devnull, "w"), kill_grace_s=0.5)
    pids: list[int] = []

    def stop_when_started():
        pids.extend(int(p) for p in _wait_for(write_dig.dir / "pids.txt").split())
        runner.stop("SIGTERM")

    t = threading.Thread(target=stop_when_started)
    t.start()
    started = time.monotonic()
    result = runner.run()
    t.join()
    assert time.monotonic() - started < 20
    assert not result.success and result.terminated_by == "SIGTERM" and result.exit_code == 143
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pids and not any(_alive(p) for p in pids)
    assert not (write_dig.dir / "after.txt").exists()
