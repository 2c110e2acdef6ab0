"""reco plan: what a daily run of a pipeline would need at a given size, per step, for exact and ANN candidates.

    reco plan --pipeline P --users U --items I [--interactions NNZ] [--factors D] [--eval-users E] [--json]

Sizes accept plain integers or 10M / 1.3B style suffixes. N, related N, ALS iterations and the batch size come
from the pipeline's config; --factors defaults to the pipeline's model factors. The per-unit costs come from
batch/calibration.json (``make bench``); see batch/capacity.py for the formulas.
"""

from __future__ import annotations

import json

from batch.capacity import PlanInput, choose_method, format_plan, load_calibration, plan, totals
from batch.cli import add_command
from batch.config import ENVIRONMENTS, load_pipeline


def register(sub) -> None:
    p = add_command(sub, "plan")
    p.add_argument("--pipeline", required=True)
    p.add_argument("--env", default="local", choices=ENVIRONMENTS)
    p.add_argument("--users", required=True, help="users to score, e.g. 100M")
    p.add_argument("--items", required=True, help="available items, e.g. 10M")
    p.add_argument(
        "--interactions", default=None, help="(user, item) pairs in the window (default 20 per user)"
    )
    p.add_argument("--factors", default=None, help="model factors (default: the pipeline's)")
    p.add_argument(
        "--eval-users",
        default=None,
        help="users the offline evaluation scores (with holdout-day interactions; default: half the users)",
    )
    p.add_argument(
        "--gpu-train", action="store_true", help="train with implicit's GPU ALS (resources: {train: gpu})"
    )
    p.add_argument("--calibration", default=None, help="calibration file (default: batch/calibration.json)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plan)


def refit_iterations(pipeline, iterations: int) -> int:
    """ALS iterations train runs after the evaluated fit (batch/steps/train.py: fit_full): a warm refit of
    ``evaluation.refit_iterations``, a second full fit when that is null, none with evaluation off."""
    ev = pipeline.evaluation
    if not ev.enabled:
        return 0
    return ev.refit_iterations if ev.refit_iterations else iterations


def eval_users(pipeline, given: str | None) -> int | str | None:
    """Users train's offline evaluation scores: 0 with evaluation off, else ``--eval-users`` (checked by
    PlanInput.create) or None (the plan's default share, capped at ``evaluation.max_users``)."""
    return given if pipeline.evaluation.enabled else 0


def cmd_plan(args) -> int:
    pipeline = load_pipeline(args.pipeline, args.env)
    params = pipeline.model.params
    cal = load_calibration(args.calibration)
    p = PlanInput.create(
        args.users,
        args.items,
        args.interactions,
        args.factors if args.factors is not None else params.get("factors", 64),
        n=pipeline.candidates.n,
        related_n=pipeline.candidates.related_n,
        iterations=params.get("iterations", 15),
        refit_iterations=refit_iterations(pipeline, params.get("iterations", 15)),
        batch_size=pipeline.candidates.batch_size,
        eval_users=eval_users(pipeline, args.eval_users),
        eval_max_users=pipeline.evaluation.max_users,
        gpu_train=args.gpu_train,
    )
    steps = plan(p, cal)
    if args.json:
        choice = choose_method(p.users, p.items, p.factors, p.n, "sharded", cal)
        print(
            json.dumps(
                {
                    "input": p.__dict__,
                    "steps": [s.to_dict() for s in steps],
                    "totals": [totals(steps, "exact"), totals(steps, "ann")],
                    "auto": {"method": choice.method, "reason": choice.reason},
                },
                indent=1,
            )
        )
    else:
        print(format_plan(p, steps, cal))
    return 0
