"""Retries of a step run, inside `reco submit`: only for failures that can succeed when tried again.

Digdag's ``_retry`` reruns a task on any non-zero exit and cannot be told exit codes, so the workflows carry no
``_retry`` on their steps: ``reco submit`` retries here, and only what can succeed again:

- never: 2 (bad command line), 3 (a check refused to publish), 65 (bad input): the same input gives the same
  answer, so a retry only repeats the failure (and, for a gate, its Slack alert) and delays the failure alert;
- never: this process itself was told to stop (SIGTERM: Digdag killed the task; the Job was deleted);
- otherwise (1 unexpected, 75 locked, 137 killed/OOM, 143 a pod terminated, an API error), up to ``retries``
  more times, waiting ``interval_s`` doubled each time up to ``max_interval_s``.

The GKE runner's Job name is deterministic per attempt: a retry finds the failed Job, deletes it and runs the
step again under the same name. Kubernetes' own pod retries (backoffLimit) come first, inside each try; the pod
failure policy fails the Job at once on 2, 3 and 65, so those reach this loop as one failure.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from batch.errors import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_FAILURE, EXIT_USAGE, RecoError
from batch.runners.base import Runner, StepRun

log = logging.getLogger("reco.runners.retry")

DETERMINISTIC_EXIT_CODES = frozenset({EXIT_USAGE, EXIT_CHECK_FAILED, EXIT_BAD_INPUT})
INTERVAL_ENV = "RECO_SUBMIT_RETRY_INTERVAL_S"  # `reco digdag run --no-retry-wait` sets it to 0 for its tasks


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 2
    interval_s: float = 30.0
    max_interval_s: float = 300.0

    def wait(self, retry: int) -> float:
        """Seconds before retry number ``retry`` (1-based)."""
        return min(self.interval_s * 2 ** (retry - 1), self.max_interval_s)

    @classmethod
    def default_interval_s(cls) -> float:
        raw = os.environ.get(INTERVAL_ENV)
        try:
            return max(0.0, float(raw)) if raw else cls.interval_s
        except ValueError:
            return cls.interval_s


def exit_code_of(error: BaseException) -> int:
    return error.exit_code if isinstance(error, RecoError) else EXIT_FAILURE


def is_retryable(error: BaseException) -> bool:
    """Whether trying the same run again can succeed."""
    if getattr(error, "reason", None) == "Terminated":  # we were told to stop: stop
        return False
    return exit_code_of(error) not in DETERMINISTIC_EXIT_CODES


def run_with_retries(
    runner: Runner,
    run: StepRun,
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Run ``run`` through ``runner``; returns how many tries it took. Re-raises the last failure."""
    tries = 0
    while True:
        tries += 1
        try:
            runner.run(run)
            return tries
        except Exception as e:
            retryable = is_retryable(e)
            if not retryable or tries > policy.retries:
                log.error(
                    "step failed; %s",
                    "not retried: the same input gives the same answer"
                    if not retryable
                    else f"giving up after {tries} tries",
                    extra={
                        "step": run.step,
                        "attempt": run.attempt,
                        "exit_code": exit_code_of(e),
                        "tries": tries,
                        "retryable": retryable,
                    },
                )
                raise
            wait = policy.wait(tries)
            log.warning(
                f"step failed with exit code {exit_code_of(e)} ({e}); retry {tries}/{policy.retries}"
                + (f" in {wait:g}s" if wait else ""),
                extra={
                    "step": run.step,
                    "attempt": run.attempt,
                    "exit_code": exit_code_of(e),
                    "retry": tries,
                },
            )
            if wait:
                sleep(wait)
