"""reco submit: run one step the way the environment's runner runs it (Digdag's sh> tasks call this).

The step's Job is rendered from the environment's Kustomize overlay; with runner "gke" it is created in the
cluster and watched, with runner "local" its container command runs here as processes. Either way the exit code is
0 on success, and otherwise non-zero with one line naming the reason (OOMKilled, DeadlineExceeded, ...).

Retries happen here, not in Digdag: failures that can succeed again (exit 1, 75, 137, 143 of a pod, API errors)
are retried ``--retries`` times; 2, 3 and 65 never are (batch/runners/retry.py, docs/digdag.md).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from batch.cli import add_command
from batch.cli.common import add_pipeline_args, load_checked_pipeline, step_name
from batch.config import load_environment, parse_date, parse_set_options
from batch.errors import ConfigError
from batch.graph import GRAPH
from batch.runners import StepRun, get_runner
from batch.runners.retry import INTERVAL_ENV as RETRY_INTERVAL_ENV
from batch.runners.retry import RetryPolicy, run_with_retries


def register(sub) -> None:
    p = add_command(sub, "submit")
    p.add_argument(
        "name", metavar="STEP", type=step_name, help="a step of the graph: " + ", ".join(GRAPH.names())
    )
    add_pipeline_args(p)
    p.add_argument(
        "--attempt",
        default=None,
        help="Digdag attempt id (${attempt_id}): a task retry finds the Job its attempt already made "
        "(default: a new id per invocation)",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=RetryPolicy.retries,
        help="retry a failure that can succeed again (exit 1, 75, 137, 143) up to N more times; "
        f"2, 3 and 65 are never retried (default: {RetryPolicy.retries})",
    )
    p.add_argument(
        "--retry-interval",
        type=float,
        default=None,
        metavar="SECONDS",
        help="wait before the first retry, doubled for each next one up to 300 s "
        f"(default: ${{{RETRY_INTERVAL_ENV}}} or {RetryPolicy.interval_s:g})",
    )
    p.set_defaults(func=cmd_submit)


def step_run_from_args(args) -> StepRun:
    overrides = parse_set_options(args.overrides)
    pipeline = load_checked_pipeline(
        args.pipeline, args.env, overrides
    )  # validates the config before any Job exists
    step = GRAPH.step(args.name)
    return StepRun(
        pipeline=pipeline.name,
        step=step.name,
        session_date=parse_date(args.date).isoformat(),
        env=args.env,
        attempt=args.attempt or datetime.now(UTC).strftime("m%Y%m%d%H%M%S"),
        resource_class=step.resource_class(pipeline),
        sharded=step.sharded,
        shard_count=pipeline.candidates.shard_count if step.sharded else 1,
        overrides=overrides,
    )


def cmd_submit(args) -> int:
    if args.retries < 0:
        raise ConfigError(f"--retries must be >= 0, got {args.retries}")
    pipeline = load_checked_pipeline(args.pipeline, args.env, parse_set_options(args.overrides))
    if not GRAPH.step(args.name).is_enabled(pipeline):
        # the shared workflow names every step; one this pipeline does not use must not start a pod (or a node)
        print(f"step {args.name} skipped: not enabled for pipeline {pipeline.name} (no Job)", file=sys.stderr)
        return 0
    run = step_run_from_args(args)
    interval = args.retry_interval if args.retry_interval is not None else RetryPolicy.default_interval_s()
    policy = RetryPolicy(retries=args.retries, interval_s=max(0.0, interval))
    run_with_retries(get_runner(load_environment(args.env)), run, policy)
    return 0
