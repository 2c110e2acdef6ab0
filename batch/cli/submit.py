"""reco submit: run one step the way the environment's runner runs it (Digdag's sh> tasks call this).

Until the GKE runner lands this runs the step here, every shard in turn.
"""

from __future__ import annotations

from batch.cli.common import add_pipeline_args, context_from_args
from batch.cli.pipeline import run_step
from batch.context import StepContext
from batch.steps import STEP_NAMES


def register(sub) -> None:
    p = sub.add_parser("submit", help="run one step through the environment's runner (local processes or GKE Jobs)")
    p.add_argument("name", choices=STEP_NAMES, metavar="STEP")
    add_pipeline_args(p)
    p.add_argument("--attempt", default=None,
                   help="Digdag attempt id (${attempt_id}): a task retry finds the Job its attempt already made")
    p.set_defaults(func=cmd_submit)


def cmd_submit(args) -> int:
    base = context_from_args(args)

    def ctx_for_shard(index: int) -> StepContext:
        return StepContext(pipeline=base.pipeline, env=base.env, session_date=base.session_date, shard_index=index,
                           shard_count=base.shard_count, overrides=base.overrides, run_id=base.run_id)

    run_step(ctx_for_shard, args.name, base.shard_count)
    return 0
