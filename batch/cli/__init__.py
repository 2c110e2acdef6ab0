"""The `reco` command: the only place that wires config, context, steps, runners and alerts together.

Each command group lives in its own module with a ``register(subparsers)`` function; this module builds the
parser from them and turns RecoError into one readable line and its exit code.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import logging
import os
import sys

from batch.errors import EXIT_BROKEN_PIPE, EXIT_FAILURE, MissingTableError, RecoError
from batch.logs import log_level, redact, setup_logging

# Every top-level command: the module that registers it and its line in `reco --help`, in help order. Only the
# invoked command's module is imported (pip keeps a commands_dict of module paths for the same reason): `reco
# --help`, `reco notify` or `reco plan` must not pay for pandas, DuckDB, implicit and the step graph, which a
# step's pod imports once, for the step it runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("batch.cli.pipeline", "run every step of a pipeline for one session date, here"),
    "step": ("batch.cli.pipeline", "run one step (the command a Job's container runs)"),
    "show": ("batch.cli.pipeline", "print outputs"),
    "data": ("batch.cli.pipeline", "load input data into the local warehouse"),
    "demo": ("batch.cli.pipeline", "generate demo data if missing, run the demo pipeline, print a summary"),
    "submit": (
        "batch.cli.submit",
        "run one step through the environment's runner (local processes or GKE Jobs)",
    ),
    "digdag": ("batch.cli.digdag", "run and check .dig workflows here; drive the Digdag server"),
    "backfill": ("batch.cli.digdag", "run a pipeline's workflow for a range of session dates, oldest first"),
    "notify": ("batch.cli.notify", "send a Slack message about a daily batch (used by the Digdag workflows)"),
    "report": ("batch.cli.quality", "write the run report of one date: one self-contained HTML file"),
    "metrics": (
        "batch.cli.quality",
        "print the metric store's rows of a pipeline (latest run per date/step)",
    ),
    "plan": (
        "batch.cli.plan",
        "capacity plan per step (memory, resource class, shards, wall time, node-hours)",
    ),
    "tune": ("batch.cli.tune", "tune a pipeline's model parameters (Optuna study, parallel workers)"),
    "rollback": (
        "batch.cli.rollback",
        "put an earlier publish back in service (files, model, warehouse view together)",
    ),
    "dashboard": (
        "batch.cli.dashboard",
        "serve the monitoring dashboard (overview, metrics, runs, models, recs)",
    ),
}
ALL = None  # build_parser(load=ALL): every command's module

log = logging.getLogger("reco")


def add_command(sub, name: str) -> argparse.ArgumentParser:
    """The parser of a top-level command, with its help line from COMMANDS (what its module registers)."""
    return sub.add_parser(name, help=COMMANDS[name][1], description=COMMANDS[name][1])


def invoked_command(argv: list[str]) -> str | None:
    """The top-level command named on a command line (``reco --log-level debug run ...`` -> ``run``), if any."""
    args = iter(argv)
    for arg in args:
        if arg == "--log-level":
            next(args, None)  # its value
        elif not arg.startswith("-"):
            return arg
    return None


def build_parser(load: set[str] | None = ALL) -> argparse.ArgumentParser:
    """The `reco` parser. ``load``: the command modules to import (default all, as `reco digdag check` needs to
    validate every command of a workflow); the other commands are listed by name and help line only."""
    parser = argparse.ArgumentParser(
        prog="reco", description="Daily recommendation batches: aggregate -> train -> candidates -> export."
    )
    parser.add_argument(
        "--log-level",
        default=None,
        type=_log_level_arg,
        help="DEBUG, INFO (default), WARNING, ERROR; any case (default: $RECO_LOG_LEVEL or INFO)",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="only warnings and errors on stderr; no progress"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    registered: set[str] = set()
    for name, (module, help_line) in COMMANDS.items():
        if load is not ALL and module not in load:
            sub.add_parser(name, help=help_line)  # listed; parsing its arguments loads its module
        elif module not in registered:
            importlib.import_module(module).register(sub)
            registered.add(module)
    return parser


def _version() -> str:
    try:
        return importlib.metadata.version("reco-batch")
    except importlib.metadata.PackageNotFoundError:  # running from a checkout that was never installed
        return "unknown"


def _log_level_arg(value: str) -> str:
    try:
        return log_level(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _quiet_broken_pipe() -> int:
    """The reader of stdout went away (`reco show ... | head`): stop writing, no traceback."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush must not fail again
    except (OSError, ValueError, AttributeError):  # stdout replaced by something without a descriptor
        pass
    return EXIT_BROKEN_PIPE


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = invoked_command(argv)
    parser = build_parser({COMMANDS[command][0]} if command in COMMANDS else set())
    args = parser.parse_args(argv)
    try:
        setup_logging(args.log_level, quiet=args.quiet)
    except ValueError as e:  # $RECO_LOG_LEVEL with an unknown name
        print(f"reco: error: $RECO_LOG_LEVEL: {e}", file=sys.stderr)
        return 2
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except RecoError as e:
        if isinstance(e, MissingTableError) and getattr(args, "pipeline", None):
            e.for_pipeline(args.pipeline)
        print(f"reco: error: {redact(str(e))}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("reco: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # the one line for Slack; the traceback for the log
        log.exception("unexpected failure")
        print(f"reco: error: unexpected {type(e).__name__}: {redact(str(e))}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
