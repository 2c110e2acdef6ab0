"""The `reco` command: the only place that wires config, context, steps, runners and alerts together.

Each command group lives in its own module with a ``register(subparsers)`` function; this module builds the
parser from them and turns RecoError into one readable line and its exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from batch.errors import EXIT_FAILURE, RecoError

# Command groups, in the order `reco --help` lists them.
COMMAND_MODULES = [
    "batch.cli.pipeline",
    "batch.cli.submit",
    "batch.cli.digdag",
    "batch.cli.notify",
    "batch.cli.quality",
    "batch.cli.plan",
]

log = logging.getLogger("reco")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reco", description="Daily recommendation batches: aggregate -> train -> candidates -> export."
    )
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO (default), WARNING")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from batch.logs import redact, setup_logging

    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        return int(args.func(args) or 0)
    except RecoError as e:
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
