"""The pipeline graph: every step and every gate, declared once.

A step declares what it is (name, function, the datasets it reads, the dataset it writes, sharded or not, its
resource class, when it is enabled, the metrics its result becomes, what it exports, what the summary shows).
A gate declares the step whose output it guards and whether a failure blocks what comes after (Dagster's asset
checks with ``blocking=True``): the guarded step never imports the gate. Locations follow from a step's
parameters (gokart), so any process given the same context reads and writes the same places.

The order of steps is derived from what they read and write (a topological sort, ties in registration order),
so a step added anywhere lands after the steps it reads from. This module is the single source for ``reco run``,
``reco step``, ``reco submit``, ``reco digdag check``, the summary, the run report, the metric store and the
tests; it imports no step and no check (they register themselves; ``batch.steps`` and ``batch.checks.gates``
import them all).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from typing import TYPE_CHECKING, Any

from batch.errors import ConfigError

if TYPE_CHECKING:
    from batch.config import PipelineConfig
    from batch.context import StepContext

MetricRow = tuple[str, dict | None, float]  # (metric, dimensions, value): one row of the metric store


@dataclass(frozen=True)
class Export:
    """A file the export step writes from a step's output, and the warehouse table it is loaded into."""

    file: str  # e.g. recommendations.parquet
    columns: tuple[str, ...]  # columns taken from the shards; model_version and dt are added
    table_suffix: str = ""  # warehouse table = export.table + suffix


@dataclass(frozen=True)
class StepSpec:
    name: str
    func: Callable[[StepContext], dict]
    writes: str  # dataset
    reads: tuple[str, ...] = ()  # datasets
    sharded: bool = False
    resources: str = (
        "standard"  # resource class: the Job template variant (k8s/base/batch), per pipeline overridable
    )
    # a candidate source: enabled when the pipeline lists it in candidates.sources
    source: str | None = None
    reads_sources: bool = False  # also reads every candidate source's dataset (the export)
    enabled: Callable[[PipelineConfig], bool] | None = None
    metrics: Callable[[dict], list[MetricRow]] | None = None  # the step's result -> metric store rows
    summarize: Callable[[dict], dict] | None = None  # commit-marker metadata -> top-level summary keys
    exports: tuple[Export, ...] = ()
    description: str = ""

    def is_enabled(self, pipeline: PipelineConfig) -> bool:
        if self.source is not None and self.source not in pipeline.candidates.sources:
            return False
        return self.enabled is None or bool(self.enabled(pipeline))

    def resource_class(self, pipeline: PipelineConfig) -> str:
        """The declared class, unless the pipeline's ``resources:`` map sets another for this step."""
        return pipeline.resources.get(self.name, self.resources)


@dataclass
class GateOutcome:
    """What a gate found: check results (batch.checks.data.CheckResult) and figures for its verdict file."""

    results: list
    info: dict = field(default_factory=dict)
    metrics: list[MetricRow] = field(
        default_factory=list
    )  # figures of the guarded output for the metric store
    source_run_id: str | None = None  # the run of the guarded output it judged


@dataclass(frozen=True)
class GateSpec:
    name: str  # "data checks", shown in alerts
    guards: str  # step name
    func: Callable[[StepContext, dict], GateOutcome]  # (context, the guarded step's result) -> outcome
    dataset: str  # where its verdict is committed, per date
    blocking: bool = True  # a failed `fail` check stops the batch and refuses the output to later steps
    file: str = "verdict.json"


class Graph:
    def __init__(self) -> None:
        self._steps: dict[str, StepSpec] = {}
        self._gates: dict[str, GateSpec] = {}

    # -- registration ----------------------------------------------------------------------------------------

    def add_step(self, spec: StepSpec) -> StepSpec:
        if spec.name in self._steps and self._steps[spec.name] != spec:
            raise ValueError(f"step {spec.name!r} is declared twice")
        for other in self._steps.values():
            if other.name != spec.name and other.writes == spec.writes:
                raise ValueError(f"steps {other.name!r} and {spec.name!r} both write dataset {spec.writes!r}")
        self._steps[spec.name] = spec
        return spec

    def add_gate(self, gate: GateSpec) -> GateSpec:
        self._gates[gate.name] = gate
        return gate

    def remove(self, name: str) -> None:
        """Unregister a step (and the gates on it) or a gate: for tests that add a temporary one."""
        self._steps.pop(name, None)
        self._gates.pop(name, None)
        for gate in [g for g in self._gates.values() if g.guards == name]:
            del self._gates[gate.name]

    @contextmanager
    def extended(self, *specs: StepSpec | GateSpec) -> Iterator[Graph]:
        """Register steps or gates for the duration of a block (tests, notebooks)."""
        for spec in specs:
            self.add_gate(spec) if isinstance(spec, GateSpec) else self.add_step(spec)
        try:
            yield self
        finally:
            for spec in specs:
                self.remove(spec.name)

    # -- queries -----------------------------------------------------------------------------------------------

    def producer(self, dataset: str) -> StepSpec | None:
        return next((s for s in self._steps.values() if s.writes == dataset), None)

    def steps(self) -> list[StepSpec]:
        """Every step, each after the steps it reads from (ties in registration order)."""
        sorter: TopologicalSorter = TopologicalSorter()
        names = list(self._steps)
        for name in names:
            deps = [p.name for d in self.inputs(self._steps[name]) if (p := self.producer(d)) is not None]
            sorter.add(name, *deps)
        try:
            sorter.prepare()
        except CycleError as e:
            raise ValueError(f"the pipeline graph has a cycle: {' -> '.join(e.args[1])}") from None
        order: list[str] = []
        rank = {n: i for i, n in enumerate(names)}
        ready: set[str] = set()
        while sorter.is_active():
            # one at a time, the earliest registered of those ready: a step that waits for an extra input (the
            # candidates for the index) keeps its place before later-registered steps (related)
            ready.update(sorter.get_ready())
            first = min(ready, key=rank.__getitem__)
            ready.remove(first)
            order.append(first)
            sorter.done(first)
        return [self._steps[n] for n in order]

    def names(self) -> list[str]:
        return [s.name for s in self.steps()]

    def step(self, name: str) -> StepSpec:
        if name not in self._steps:
            raise ConfigError(f"unknown step {name!r}; steps: {', '.join(self.names())}")
        return self._steps[name]

    def enabled_steps(self, pipeline: PipelineConfig) -> list[StepSpec]:
        return [s for s in self.steps() if s.is_enabled(pipeline)]

    def gates_on(self, step: str) -> list[GateSpec]:
        gates = [g for g in self._gates.values() if g.guards == step]
        if gates and self.step(step).sharded:
            # shards run as separate processes: no one process sees the whole output to judge it
            raise ValueError(
                f"gate {gates[0].name!r} guards sharded step {step!r}: gate a non-sharded step that reads it"
            )
        return gates

    def gates(self) -> list[GateSpec]:
        return list(self._gates.values())

    def inputs(self, spec: StepSpec) -> tuple[str, ...]:
        """The datasets a step reads: its own list, and every candidate source's when it reads sources."""
        extra = tuple(s.writes for s in self.sources().values()) if spec.reads_sources else ()
        return spec.reads + tuple(d for d in extra if d not in spec.reads)

    def upstream(self, step: str) -> list[StepSpec]:
        """The steps whose output this step reads."""
        return [p for d in self.inputs(self.step(step)) if (p := self.producer(d)) is not None]

    def downstream(self, step: str) -> list[StepSpec]:
        """Every step that reads, directly or not, from this one."""
        out: list[StepSpec] = []
        frontier = [self.step(step).writes]
        while frontier:
            dataset = frontier.pop()
            for s in self.steps():
                if dataset in self.inputs(s) and s not in out:
                    out.append(s)
                    frontier.append(s.writes)
        return out

    def sources(self) -> dict[str, StepSpec]:
        """Candidate sources by name: what ``candidates.sources`` may list."""
        return {s.source: s for s in self._steps.values() if s.source is not None}

    def exports(self, pipeline: PipelineConfig) -> list[tuple[StepSpec, Export]]:
        """The files the export step writes: what the enabled steps declare."""
        return [(s, e) for s in self.enabled_steps(pipeline) for e in s.exports]

    def check_pipeline(self, pipeline: PipelineConfig, source: str = "") -> None:
        """What a pipeline config names must exist in the graph; errors name the field."""
        where = f"{source}: " if source else ""
        known = self.sources()
        for name in pipeline.candidates.sources:
            if name not in known:
                raise ConfigError(
                    f"{where}field 'candidates.sources': no candidate source named {name!r}; "
                    f"known: {', '.join(sorted(known))}"
                )
        for name in pipeline.resources:
            if name not in self._steps:
                raise ConfigError(
                    f"{where}field 'resources.{name}': no step named {name!r}; steps: {', '.join(self.names())}"
                )


GRAPH = Graph()


def step(**kwargs: Any) -> Callable[[Callable[[StepContext], dict]], Callable[[StepContext], dict]]:
    """Declare the decorated function as a step: ``@step(name="train", reads=("interactions",), writes="model")``."""

    def register(func: Callable[[StepContext], dict]) -> Callable[[StepContext], dict]:
        GRAPH.add_step(StepSpec(func=func, **kwargs))
        return func

    return register


def gate(**kwargs: Any) -> Callable[[Callable[..., GateOutcome]], Callable[..., GateOutcome]]:
    """Declare the decorated function as a gate: ``@gate(name="model gate", guards="train", dataset=...)``."""

    def register(func: Callable[..., GateOutcome]) -> Callable[..., GateOutcome]:
        GRAPH.add_gate(GateSpec(func=func, **kwargs))
        return func

    return register
