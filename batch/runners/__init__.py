"""Runners: how `reco submit` runs one step (local processes or a GKE Job) behind one interface."""

from batch.runners.base import Runner, StepFailed, StepRun, get_runner

__all__ = ["Runner", "StepFailed", "StepRun", "get_runner"]
