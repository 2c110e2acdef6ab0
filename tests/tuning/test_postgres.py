"""The parallel path against a real PostgreSQL server (started by conftest's postgres_url; skipped without it):
racing workers hold the budget, and a worker killed mid-trial has its trial failed by heartbeat and retried once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState
from tune_helpers import SESSION, SMALL

from batch.cli import main
from batch.config import load_pipeline
from batch.tuning.storage import open_storage


def _study(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(url, load_pipeline("demo")))


def test_racing_workers_hold_the_budget_on_postgres(tune, postgres_url):
    name = f"pg-{uuid.uuid4().hex[:8]}"
    # three workers for four trials: they race for the last ones
    code, report = tune("--trials", "4", "--workers", "3", "--storage", postgres_url, "--study", name)
    assert code == 0
    trials = _study(postgres_url, name).get_trials()
    assert len(trials) == 4 and report["trials"]["finished"] == 4
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert len({t.user_attrs["worker"] for t in trials}) >= 2, "the trials ran in more than one worker"
    assert trials[0].user_attrs["role"] == "production"
    assert report["storage"].endswith("/postgres") and "tuned" in report


def test_a_killed_worker_trial_is_failed_and_retried_once(aggregated, postgres_url):
    name = f"kill-{uuid.uuid4().hex[:8]}"
    # one slow point (many iterations, scored at each): the production trial takes seconds
    slow = [
        "--set", "model.iterations=3000",
        "--set", "tuning.search_space={als: {iterations: {type: int, low: 3000, high: 3000}}}",
        "--set", "tuning.heartbeat_interval_s=1",
        "--set", "tuning.grace_period_s=2",
        "--set", "tuning.pruner.enabled=false",
        "--set", "tuning.pruner.report_every=100",
    ]  # fmt: skip
    base = ["tune", "--pipeline", "demo", "--date", SESSION, *SMALL, *slow, "--storage", postgres_url]
    base += ["--study", name, "--trials", "2"]
    assert main([*base, "--stage", "prepare"]) == 0
    worker = subprocess.Popen(
        [sys.executable, "-c", "import sys; from batch.cli import main; sys.exit(main(sys.argv[1:]))", *base,
         "--stage", "work", "--worker-index", "0"],
        env=os.environ.copy(),
    )  # fmt: skip
    study = _study(postgres_url, name)
    deadline = time.time() + 60
    # running with its point drawn: a trial is RUNNING from ask(), a moment before its suggest_* calls store the
    # parameters; killed in between, it has none to hand to its retry (which then draws afresh)
    while not any(t.params for t in study.get_trials(states=(TrialState.RUNNING,))):
        assert worker.poll() is None and time.time() < deadline, "the worker never started a trial"
        time.sleep(0.2)
    worker.send_signal(signal.SIGKILL)  # at once: on an idle machine the trial takes only a few seconds
    worker.wait()
    assert not study.get_trials(states=(TrialState.COMPLETE,)), "the trial finished before the kill"
    time.sleep(3)  # past the grace period: the trial's heartbeat is stale

    # a second worker fails the dead worker's trial, runs its retry, and stops at the budget
    assert main([*base, "--stage", "work", "--worker-index", "1"]) == 0
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert RetryHeartbeatStaleTrialCallback.retried_trial_number(trials[1]) == 0
    assert trials[1].params == trials[0].params
    assert RetryHeartbeatStaleTrialCallback.retry_history(trials[1]) == [0]
