"""The steps of a daily batch. Each is a plain function of a StepContext that reads committed inputs and commits
its outputs; none of them knows how it is being run (CLI, local runner, GKE Job)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from batch.context import StepContext
from batch.errors import CheckFailedError


@dataclass(frozen=True)
class Step:
    name: str
    func: Callable[[StepContext], dict]
    sharded: bool = False
    resource_class: str = "standard"  # which Job template runs it in the cloud
    description: str = ""

    def enabled(self, ctx: StepContext) -> bool:
        return self.name != "related" or "related" in ctx.pipeline.candidates.sources

    def run(self, ctx: StepContext) -> dict:
        """Run the step: what every caller (reco run, reco step in a pod, tests) goes through.

        Quality hooks (below; docs/quality.md): a step refuses inputs that a gate stopped; data
        checks run after aggregate, the model gate after train; every non-sharded step records its metrics;
        export promotes the published model, writes the run report and scans for anomalies. A gate that fails
        raises CheckFailedError (exit 3) after alerting, so nothing downstream runs.
        """
        from batch.checks.hooks import after_step, before_step, on_check_failed

        before_step(self.name, ctx)
        try:
            result = self.func(ctx)
        except CheckFailedError as e:  # the export's publish check
            on_check_failed(self.name, ctx, e)
            raise
        if not self.sharded:
            after_step(self.name, ctx, result)
        return result


def _steps() -> dict[str, Step]:
    from batch.steps import aggregate, candidates, export, train

    return {
        s.name: s
        for s in [
            Step(
                "aggregate", aggregate.run, description="events -> weighted interactions, id maps, data stats"
            ),
            Step(
                "train",
                train.run,
                resource_class="highmem",
                description="interactions -> model + offline metrics",
            ),
            Step("candidates", candidates.run, sharded=True, description="model -> top-N per user (sharded)"),
            Step(
                "related",
                candidates.run_related,
                sharded=True,
                description="model -> related items (sharded)",
            ),
            Step("export", export.run, description="shards -> published recommendations (checked)"),
        ]
    }


STEP_NAMES = ("aggregate", "train", "candidates", "related", "export")


def get_step(name: str) -> Step:
    steps = _steps()
    if name not in steps:
        raise KeyError(f"unknown step {name!r}; steps: {', '.join(STEP_NAMES)}")
    return steps[name]
