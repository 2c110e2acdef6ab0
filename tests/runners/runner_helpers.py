"""Helpers shared by the runner tests (an importable name of its own, unlike conftest)."""

from __future__ import annotations

from batch.config import EnvironmentConfig, KubernetesConfig
from batch.runners.base import StepRun


def gke_env(timeout_s: int = 900) -> EnvironmentConfig:
    return EnvironmentConfig(
        name="dev",
        runner="gke",
        kubernetes=KubernetesConfig(
            overlay="k8s/overlays/dev", namespace="reco-batch", unschedulable_timeout_s=timeout_s
        ),
    )


def step_run(
    step: str = "aggregate",
    *,
    env: str = "dev",
    attempt: str = "42",
    shard_count: int = 1,
    resource_class: str = "standard",
) -> StepRun:
    sharded = step in ("candidates", "related")
    return StepRun(
        pipeline="demo",
        step=step,
        session_date="2026-11-21",
        env=env,
        attempt=attempt,
        resource_class=resource_class,
        sharded=sharded,
        shard_count=shard_count if sharded else 1,
    )
