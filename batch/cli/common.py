"""Arguments shared by commands, and building a StepContext from them."""

from __future__ import annotations

import argparse
import json
import logging

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
from batch.errors import ConfigError
from batch.graph import GRAPH
from batch.storage import ArtifactStore
from batch.tuning.promotion import PROVENANCE_KEY, tuned_overrides

log = logging.getLogger(__name__)


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


def apply_tuned(
    store: ArtifactStore, pipeline: str, env: str, explicit: dict[str, str]
) -> tuple[PipelineConfig, dict[str, str]]:
    """The pipeline config with the promoted tuned parameter set (``reco tune``) merged under the explicit
    ``--set`` options, and the overrides to record: the tuned ones, the explicit ones and, under
    ``tuned_params``, where the tuned set came from (study, trial, date, gain). A tuned set that no longer
    validates against the config is ignored with a warning: the config's own parameters are used."""
    tuned, provenance = tuned_overrides(store, pipeline)
    if tuned:
        try:
            cfg = load_checked_pipeline(pipeline, env, {**tuned, **explicit})
        except ConfigError as e:
            log.warning(
                "the tuned parameter set of %s (study %s) is ignored: it no longer validates: %s",
                pipeline,
                provenance.get("study"),
                e,
            )
        else:
            return cfg, {**tuned, **explicit, PROVENANCE_KEY: json.dumps(provenance, sort_keys=True)}
    return load_checked_pipeline(pipeline, env, explicit), dict(explicit)


def context_from_args(
    args: argparse.Namespace,
    *,
    shard_index: int = 0,
    shard_count: int | None = None,
    run_id: str | None = None,
) -> StepContext:
    env = load_environment(args.env)
    pipeline, overrides = apply_tuned(
        ArtifactStore(env.resolved_artifact_root()),
        args.pipeline,
        args.env,
        parse_set_options(getattr(args, "overrides", None)),
    )
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
