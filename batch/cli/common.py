"""Arguments shared by commands, and building a StepContext from them."""

from __future__ import annotations

import argparse

import batch.steps  # noqa: F401  registers the steps: a pipeline's config is checked against the graph
from batch.config import (
    ENVIRONMENTS,
    PipelineConfig,
    load_environment,
    load_pipeline,
    parse_date,
    parse_set_options,
    pipeline_path,
)
from batch.context import StepContext
from batch.graph import GRAPH


def step_name(value: str) -> str:
    """argparse type of a STEP argument: a step of the graph (a usage error, exit 2, otherwise)."""
    if value not in GRAPH.names():
        raise argparse.ArgumentTypeError(f"unknown step {value!r}; steps: {', '.join(GRAPH.names())}")
    return value


def load_checked_pipeline(name: str, env: str, overrides: dict[str, str] | None = None) -> PipelineConfig:
    """The pipeline config, validated on its own and against the graph (candidate sources, resources)."""
    pipeline = load_pipeline(name, env, overrides)
    GRAPH.check_pipeline(pipeline, f"{pipeline_path(name)} (env {env})")
    return pipeline


def add_pipeline_args(p: argparse.ArgumentParser, *, date: bool = True, overrides: bool = True) -> None:
    p.add_argument("--pipeline", required=True, help="pipeline name (config/pipelines/NAME.yaml)")
    if date:
        p.add_argument("--date", required=True, help="session date, YYYY-MM-DD")
    p.add_argument("--env", default="local", choices=ENVIRONMENTS, help="environment (default: local)")
    if overrides:
        p.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY.PATH=VALUE",
            help="override one config value for this run, e.g. --set model.factors=64 (repeatable)",
        )


def context_from_args(
    args: argparse.Namespace,
    *,
    shard_index: int = 0,
    shard_count: int | None = None,
    run_id: str | None = None,
) -> StepContext:
    overrides = parse_set_options(getattr(args, "overrides", None))
    pipeline = load_checked_pipeline(args.pipeline, args.env, overrides)
    env = load_environment(args.env)
    kwargs = {}
    if run_id:
        kwargs["run_id"] = run_id
    return StepContext(
        pipeline=pipeline,
        env=env,
        session_date=parse_date(args.date),
        shard_index=shard_index,
        shard_count=shard_count if shard_count is not None else pipeline.candidates.shard_count,
        overrides=overrides,
        **kwargs,
    )
