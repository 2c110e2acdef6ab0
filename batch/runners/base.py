"""One interface for running a step: callers (``reco submit``) never ask which runner is behind it.

``get_runner(env)`` picks the backend from the environment's ``runner`` ("local" | "gke"); both start from the same
rendered Job manifest (batch/runners/manifests.py) and report a failure as one line in a StepFailed.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from batch.errors import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_FAILURE, RecoError

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class StepRun:
    """What to run: one step of one pipeline for one session date, as one attempt."""

    pipeline: str
    step: str
    session_date: str  # YYYY-MM-DD
    env: str
    attempt: str
    resource_class: str = "standard"
    sharded: bool = False
    shard_count: int = 1
    overrides: dict[str, str] = field(default_factory=dict)


EXIT_TERMINATED = 143  # 128 + SIGTERM: Digdag killed the task and the Job was deleted


class StepFailed(RecoError):
    """The step's Job (or local processes) failed; the message is the one line people read (Digdag, Slack).

    The exit code passes on the step's own deterministic codes (3 check failed, 65 bad input) so that Digdag and
    alerts can tell them from retryable failures, and 143 after SIGTERM; everything else is EXIT_FAILURE.
    """

    def __init__(self, reason: str, message: str, *, exit_code: int | None = None):
        super().__init__(message)
        self.reason = reason
        if exit_code in (EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_TERMINATED):
            self.exit_code = exit_code
        else:
            self.exit_code = EXIT_FAILURE


class Runner(ABC):
    """Runs a StepRun to completion: returns on success, raises StepFailed with one line otherwise."""

    @abstractmethod
    def run(self, run: StepRun) -> None: ...


def one_line(text: str, limit: int = 600) -> str:
    """Collapse whitespace and newlines; cut long text."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def summarize_log_lines(lines: list[str], count: int = 5) -> str:
    """The last few non-empty log lines, JSON log records reduced to their severity and message."""
    picked = []
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if line.startswith("{"):
            try:
                rec = json.loads(line)
            except ValueError:
                rec = None
            if isinstance(rec, dict) and "message" in rec:
                sev = rec.get("severity") or rec.get("levelname") or ""
                line = f"{sev} {rec['message']}".strip()
        picked.append(line)
    return " | ".join(picked[-count:])
