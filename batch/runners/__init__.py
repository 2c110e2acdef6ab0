"""Runners: how `reco submit` runs one step (local processes or a GKE Job) behind one interface."""

from batch.config import EnvironmentConfig
from batch.runners.base import Runner, StepFailed, StepRun
from batch.runners.local import LocalRunner


def get_runner(env: EnvironmentConfig) -> Runner:
    if env.runner == "gke":
        from batch.runners.gke import GkeRunner  # the Kubernetes client is heavy: only where it is used

        return GkeRunner(env)
    return LocalRunner(env)


__all__ = ["Runner", "StepFailed", "StepRun", "get_runner"]
