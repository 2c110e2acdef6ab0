"""reco tune: hyperparameter tuning of a pipeline's model on its own offline evaluation (docs/tuning.md).

reco tune --pipeline P --date D [--trials N] [--workers K] [--timeout S] [--dry-run] [--set k=v]
reco tune --pipeline P --date D --stage work --worker-index I     (one worker: a local process or a pod)
reco tune --pipeline P --show [--date D]                          (the study and the tuned set in service)
reco tune --pipeline P --rollback                                 (back to the previous tuned set)
reco tune --pipeline P --date D --notify                          (the study's Slack summary)
"""

from __future__ import annotations

import argparse
import importlib

from batch.cli import add_command
from batch.cli.common import add_pipeline_args

STAGES = ("all", "prepare", "work", "finish", "pod")  # the cloud workers' stages (batch/tuning/cloud.py)


def _run(args) -> int:
    """Load the implementation only for this command (Optuna and SQLAlchemy are slow to import)."""
    return importlib.import_module("batch.tuning.command").cmd_tune(args)


def register(sub) -> None:
    p = add_command(sub, "tune")
    add_pipeline_args(p, date=False)
    p.add_argument("--date", default=None, help="session date whose data is tuned on, YYYY-MM-DD")
    p.add_argument("--trials", type=int, default=None, help="trial budget (default: tuning.trials)")
    p.add_argument("--workers", type=int, default=None, help="parallel workers (default: tuning.workers)")
    p.add_argument("--timeout", type=int, default=None, help="seconds after which no new trial starts")
    p.add_argument("--dry-run", action="store_true", help="tune and report, never promote")
    p.add_argument("--storage", default=None, help="Optuna storage URL (default: $RECO_TUNING_STORAGE, ...)")
    p.add_argument("--study", default=None, help="study name (default: <pipeline>-<date>)")
    p.add_argument("--stage", choices=STAGES, default="all", help=argparse.SUPPRESS)
    p.add_argument("--attempt", default=None, help="Digdag attempt id: names the cloud workers' Job")
    p.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    what = p.add_mutually_exclusive_group()
    what.add_argument("--show", action="store_true", help="print the study and the tuned set in service")
    what.add_argument("--rollback", action="store_true", help="return to the previous tuned set")
    what.add_argument("--notify", action="store_true", help="send the study's summary to Slack")
    p.set_defaults(func=_run)
