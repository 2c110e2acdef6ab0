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

# Command groups, in the order `reco --help` lists them.
COMMAND_MODULES = [
    "batch.cli.pipeline",
    "batch.cli.submit",
    "batch.cli.digdag",
    "batch.cli.notify",
    "batch.cli.quality",
    "batch.cli.plan",
    "batch.cli.tune",
    "batch.cli.rollback",
    "batch.cli.dashboard",
]

log = logging.getLogger("reco")


def build_parser() -> argparse.ArgumentParser:
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
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
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
    parser = build_parser()
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
