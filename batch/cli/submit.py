"""reco submit: run one step the way the environment's runner runs it (Digdag's sh> tasks call this).

The step's Job is rendered from the environment's Kustomize overlay; with runner "gke" it is created in the
cluster and watched, with runner "local" its container command runs here as processes. Either way the exit code is
0 on success, and otherwise non-zero with one line naming the reason (OOMKilled, DeadlineExceeded, ...).
"""

from __future__ import annotations

from datetime import UTC, datetime

from batch.cli.common import add_pipeline_args, load_checked_pipeline, step_name
from batch.config import load_environment, parse_date, parse_set_options
from batch.graph import GRAPH
from batch.runners import StepRun, get_runner


def register(sub) -> None:
    p = sub.add_parser(
        "submit", help="run one step through the environment's runner (local processes or GKE Jobs)"
    )
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
    run = step_run_from_args(args)
    get_runner(load_environment(args.env)).run(run)
    return 0
