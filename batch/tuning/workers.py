"""Workers: the loop each worker process (or pod) runs, and K local worker processes.

Each worker loads the study and, under the budget lock, counts the trials that are running or finished
(COMPLETE, PRUNED, FAIL); below the budget it lets Optuna ask for the next trial, which is RUNNING before the lock
is released (the objective releases it first thing). So no more than ``budget`` trials ever run, however many
workers race, and a worker started late or twice finds the budget spent and exits at once.

Each worker samples with its own seed (``tuning.seed + worker index``) and TPE's ``constant_liar`` so parallel
workers do not propose the same point; a repeated point is answered from the earlier trial (objective.py).
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable

import optuna
from optuna.trial import TrialState

from batch.tuning.storage import RETRY_FAILED, BudgetLock, is_journal

log = logging.getLogger(__name__)

COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
WORKER_ATTR = "worker"  # "<host>:<pid>" of the process running a trial


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (killed child not yet reaped by its parent) is dead too
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return True


def fail_dead_local_trials(study: optuna.Study) -> list[int]:
    """RUNNING trials of processes on this host that no longer exist: FAIL, and retried once.

    The journal storage's stand-in for heartbeats (its workers all run on this machine)."""
    host = socket.gethostname()
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get(WORKER_ATTR, "")
        h, _, pid = owner.rpartition(":")
        if h != host or not pid.isdigit() or _alive(int(pid)):
            continue
        try:
            if study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):  # noqa: SLF001
                study._storage.set_trial_user_attr(  # noqa: SLF001
                    t._trial_id, "fail_reason", f"worker {owner} died during the trial"
                )
                failed.append(t.number)
                RETRY_FAILED(study, study._storage.get_trial(t._trial_id))  # noqa: SLF001
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
    return failed


def fail_stale(study: optuna.Study, storage_url: str) -> None:
    """Fail the trials of dead workers: heartbeats on RDB storage, process ids on the journal file."""
    if is_journal(storage_url):
        fail_dead_local_trials(study)
    else:
        optuna.storages.fail_stale_trials(study)


def counted_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=COUNTED))


def run_worker(
    study: optuna.Study,
    storage_url: str,
    objective: Callable[[optuna.Trial], float],
    budget: int,
    deadline: float | None = None,
    on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None,
) -> int:
    """Run trials until the budget is spent (or the deadline passes). Returns how many this worker ran."""
    lock = BudgetLock(storage_url, study.study_name)
    me = worker_id()
    ran = 0

    def guarded(trial: optuna.Trial) -> float:
        trial.set_user_attr(WORKER_ATTR, me)
        lock.release()  # the trial is RUNNING: other workers count it from now on
        return objective(trial)

    try:
        while deadline is None or time.time() < deadline:
            lock.acquire()
            try:
                fail_stale(study, storage_url)
                if counted_trials(study) >= budget:
                    break
                callbacks = [lambda s, t: on_trial(t)] if on_trial else None
                study.optimize(
                    guarded, n_trials=1, catch=(Exception,), callbacks=callbacks, gc_after_trial=True
                )
                ran += 1
            finally:
                lock.release()
    finally:
        lock.close()
    return ran


def spawn_local_workers(argv: list[str], count: int) -> list[subprocess.Popen]:
    """K worker processes running ``reco <argv> --worker-index i``."""
    procs = []
    for index in range(count):
        cmd = [
            sys.executable,
            "-c",
            "import sys; from batch.cli import main; sys.exit(main(sys.argv[1:]))",
            *argv,
            "--worker-index",
            str(index),
        ]
        procs.append(subprocess.Popen(cmd, stdout=2))  # onto our stderr (fd 2): stdout carries the report
    return procs
