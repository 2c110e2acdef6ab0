"""Capacity plan and the exact-or-ANN cost model, from per-unit costs measured on this machine.

The constants live in ``batch/calibration.json``, written by ``make bench`` (``bench/calibrate.py``): CPU costs
are measured here, per core (nanoseconds per unit of work on one core), and scale with the cores of the
resource class the step runs in. Figures that could not be measured here (GPUs, the cloud machine types) are
in its ``published`` section with their source, and everything derived from them is labelled ``published``
in the plan.

A step's process costs (:class:`StepCost`) a fixed part, run on one core whatever the size (interpreter start,
imports, config, gates' and the metric store's set-up), plus its work in core-seconds: the core operation's
formula below where there is one, plus a per-unit rest (reading, id maps, writing, checks, metrics) per
interaction, user, item or row. The core operation runs on all the class's cores, the
fixed part and the rest on one (``StepCost.wall_seconds``). The fixed part and the per-unit rest of each step
are fitted from real ``reco step`` runs at two sizes (``calibration.json``, ``steps``; candidates by ANN from ANN
runs, ``steps.candidates.ann``); ``python -m bench.plan_check`` compares the plan with a measured 10M-event run.

Core operations (D factors, U users, I items, NNZ interactions):

- exact scoring (models/topk.py): ``U x I x (select + D x matmul)`` ns per core.
- IVF search (models/ann.py, faiss IVF-flat): ``U x (nlist + nprobe x I / nlist) x D x scan`` ns per core, with
  the index's own defaults ``nlist = default_nlist(I)``, ``nprobe = default_nprobe(nlist, I)`` (measured recall@50
  >= 0.95 at 45k, 200k and 1M items; that it holds at 10M+ is an assumption the index gate checks every day).
- IVF build: k-means ``niter x 64 nlist x nlist x D`` + assignment ``I x nlist x D``, both x ``kmeans`` ns.
- ALS (implicit, conjugate gradient): per iteration ``NNZ x D x als_nnz + (U + I) x D^2 x als_rows`` ns.

Per step: aggregate = per interaction; train = ALS (evaluated fit + warm refit) + the offline evaluation's exact
scoring of its users (those with holdout-day interactions) over the catalogue + per interaction; index = IVF
build + the index gate (exact and ANN top-N of its user sample) + per item; candidates = exact scoring or IVF
search of the shard's users + per user; related = exact scoring of the shard's items (related items are always
scored exactly) + per item; export = per row (U x N + I x related N).

``choose_method`` is the pure function behind ``candidates.method: auto``; ``plan`` is ``reco plan``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batch.errors import ConfigError
from models.ann import default_nlist, default_nprobe

CALIBRATION_PATH = Path(__file__).resolve().parent / "calibration.json"
STEPS = ("aggregate", "train", "index", "candidates", "related", "export")
GIB = 2**30
BASE_PROCESS_BYTES = 350 * 2**20  # the interpreter with numpy, pyarrow, implicit, faiss imported (measured)


@dataclass(frozen=True)
class ResourceClass:
    """A Job template's pod (k8s/base/batch/job-*.yaml limits) and the node pool it lands on (terraform)."""

    name: str
    cores: int
    memory_bytes: int
    pool: str
    machine: str
    node_cores: int
    node_memory_bytes: int
    gpu: str | None = None
    gpu_memory_bytes: int = 0


# Pod limits from k8s/base/batch/job-*.yaml; machines from terraform/modules/gke/variables.tf defaults.
RESOURCE_CLASSES: dict[str, ResourceClass] = {
    "standard": ResourceClass("standard", 2, 4 * GIB, "batch-standard", "n2-standard-8", 8, 32 * GIB),
    "sharded": ResourceClass("sharded", 4, 8 * GIB, "batch-standard", "n2-standard-8", 8, 32 * GIB),
    "highmem": ResourceClass("highmem", 8, 56 * GIB, "batch-highmem", "n2-highmem-16", 16, 128 * GIB),
    "gpu": ResourceClass(
        "gpu",
        8,
        28 * GIB,
        "batch-gpu",
        "g2-standard-8",
        8,
        32 * GIB,
        gpu="nvidia-l4",
        gpu_memory_bytes=24 * GIB,
    ),
}
# The Job templates' class names (k8s/base/batch/classes) that are another name for one of the classes above.
CLASS_ALIASES = {"compute": "sharded"}  # 4 cores, 8 GiB: the sharded steps' class


def capacity_class(name: str) -> str:
    """The class of RESOURCE_CLASSES a step's declared resource class costs as (unknown ones: 'sharded')."""
    name = CLASS_ALIASES.get(name, name)
    return name if name in RESOURCE_CLASSES else "sharded"


# The largest general-purpose machine a highmem pool can be switched to before a step must be split (published).
LARGEST_NODE = ResourceClass("largest", 96, 736 * GIB, "batch-highmem", "n2-highmem-96", 96, 768 * GIB)


def load_calibration(path: str | Path | None = None) -> dict[str, Any]:
    p = Path(path) if path else CALIBRATION_PATH
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(
            f"cannot read the calibration file {p}: {e}", hint="make bench (bench/calibrate.py)"
        ) from e


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(value, str):
        text = value.strip().replace("_", "").replace(",", "")
        mult = {"K": 10**3, "M": 10**6, "G": 10**9, "B": 10**9}.get(text[-1:].upper(), 1)
        text = text[:-1] if mult > 1 else text
        try:
            number = float(text) * mult
        except ValueError:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}") from None
        value = number
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        value = int(value)
    if not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


# -- unit costs ------------------------------------------------------------------------------------------------


def exact_core_seconds(users: int, items: int, factors: int, cal: dict) -> float:
    c = cal["exact_scoring"]
    return users * items * (c["select_ns"] + factors * c["matmul_ns"]) * 1e-9


def ann_shape(items: int, cal: dict) -> tuple[int, int]:
    """(nlist, nprobe) the index step would use for a catalogue."""
    nlist = default_nlist(items)
    return nlist, min(nlist, default_nprobe(nlist, items))


def ann_query_core_seconds(users: int, items: int, factors: int, cal: dict) -> float:
    nlist, nprobe = ann_shape(items, cal)
    scanned = nlist + nprobe * items / nlist
    return users * (scanned * factors * cal["ivf"]["scan_ns"] + cal["ivf"]["query_ns"]) * 1e-9


def ann_build_core_seconds(items: int, factors: int, cal: dict) -> float:
    nlist, _ = ann_shape(items, cal)
    c = cal["ivf"]
    train = c["kmeans_iterations"] * min(items, 64 * nlist) * nlist * factors
    return (train + items * nlist * factors) * c["kmeans_ns"] * 1e-9


def ann_index_bytes(items: int, factors: int) -> int:
    nlist = default_nlist(items)
    return items * (factors * 4 + 8) + nlist * factors * 4


def als_core_seconds(users: int, items: int, nnz: int, factors: int, iterations: int, cal: dict) -> float:
    c = cal["als"]
    per_iter = nnz * factors * c["nnz_ns"] + (users + items) * factors**2 * c["rows_ns"]
    return iterations * per_iter * 1e-9


# -- the automatic choice --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MethodChoice:
    method: str  # exact | ann
    reason: str
    exact_seconds: float
    ann_seconds: float


def choose_method(
    users: int,
    items: int,
    factors: int,
    n: int,
    resource_class: str = "sharded",
    cal: dict | None = None,
    *,
    min_speedup: float | None = None,
) -> MethodChoice:
    """``candidates.method: auto``: 'exact' or 'ann' for scoring ``users`` queries against ``items`` items.

    ANN is chosen when its build plus queries are at least ``min_speedup`` (calibration, default 2) times
    faster than exact scoring: below that, exactness is worth more than the time saved. Catalogues under the
    index's ``exact_below`` and N close to the catalogue always stay exact. On the GPU class exact scoring is
    costed at the published GPU matmul rate (labelled in the reason).
    """
    cal = cal or load_calibration()
    users = _positive_int("users", users)
    items = _positive_int("items", items)
    factors = _positive_int("factors", factors)
    n = _positive_int("n", n)
    rc = RESOURCE_CLASSES.get(resource_class)
    if rc is None:
        raise ConfigError(f"unknown resource class {resource_class!r}; known: {', '.join(RESOURCE_CLASSES)}")
    speedup_needed = min_speedup if min_speedup is not None else cal["ivf"].get("min_speedup", 2.0)
    ann_s = (
        ann_build_core_seconds(items, factors, cal) + ann_query_core_seconds(users, items, factors, cal)
    ) / rc.cores
    if rc.gpu:
        gpu = cal["published"]["gpu"][rc.gpu]
        exact_s = 2.0 * users * items * factors / (gpu["fp32_tflops"] * 1e12 * gpu["matmul_efficiency"])
        where = f"{rc.gpu} at the published {gpu['fp32_tflops']} TFLOP/s x {gpu['matmul_efficiency']} (not measured here)"
    else:
        exact_s = exact_core_seconds(users, items, factors, cal) / rc.cores
        where = f"{rc.cores} cores of class {rc.name}, measured per-core rates"
    if items < cal["ivf"]["exact_below"]:
        return MethodChoice(
            "exact", f"{items:,} items is below {cal['ivf']['exact_below']:,}: exact is cheap", exact_s, ann_s
        )
    if n * 20 > items:
        return MethodChoice(
            "exact", f"N={n} is over 5% of the {items:,} items: an index prunes little", exact_s, ann_s
        )
    ratio = exact_s / ann_s if ann_s > 0 else math.inf
    figures = f"exact {exact_s:,.1f}s vs ANN build+query {ann_s:,.1f}s ({ratio:.1f}x) on {where}"
    if ratio >= speedup_needed:
        return MethodChoice("ann", f"{figures}: ANN at least {speedup_needed:g}x faster", exact_s, ann_s)
    return MethodChoice(
        "exact", f"{figures}: under the {speedup_needed:g}x that justifies approximation", exact_s, ann_s
    )


# -- the plan ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanInput:
    users: int
    items: int
    interactions: int
    factors: int
    n: int = 50
    related_n: int = 20
    iterations: int = 15
    refit_iterations: int = 3  # the warm refit after the evaluated fit (0: one fit only)
    batch_size: int = 2048
    # users the train step's offline evaluation recommends for, scored exactly over the catalogue (users with
    # interactions on the holdout day); None: EVAL_USER_SHARE of the users; 0: evaluation off
    eval_users: int | None = None
    eval_max_users: int | None = None  # evaluation.max_users: the seeded sample that caps the default share
    max_shard_hours: float = 1.0  # shard count so that one shard takes at most this long
    gpu_train: bool = False

    @classmethod
    def create(cls, users: Any, items: Any, interactions: Any = None, factors: Any = 64, **kw) -> PlanInput:
        users = _positive_int("users", users)
        items = _positive_int("items", items)
        factors = _positive_int("factors", factors)
        nnz = _positive_int("interactions", interactions) if interactions is not None else users * 20
        for key in ("n", "related_n", "iterations", "batch_size"):
            if key in kw:
                kw[key] = _positive_int(key, kw[key])
        if kw.get("eval_users") not in (None, 0):  # 0: evaluation off
            kw["eval_users"] = _positive_int("eval_users", kw["eval_users"])
        return cls(users, items, nnz, factors, **kw)

    @property
    def evaluated_users(self) -> int:
        if self.eval_users is not None:
            return self.eval_users
        share = round(EVAL_USER_SHARE * self.users)
        return share if self.eval_max_users is None else min(share, self.eval_max_users)

    @property
    def export_rows(self) -> int:
        return self.users * self.n + self.items * self.related_n


# The offline evaluation's users as a share of all users when not given: bench/run.py's generator measured
# 0.47-0.48 at 1M-10M events (its holdout day is its busiest); real data with a quieter last day has fewer.
EVAL_USER_SHARE = 0.5

# -- one step's process ------------------------------------------------------------------------------------------

INDEX_GATE_USERS = (
    2000  # the index gate's user sample (checks.index.sample_users' default, batch/checks/ann.py)
)
SHARDED_STEPS = ("candidates", "related")


@dataclass(frozen=True)
class StepCost:
    """One process of a step (for a sharded step: one shard), as ``reco step`` runs it."""

    step: str
    fixed_s: (
        float  # wall seconds whatever the size: interpreter start, imports, config, gates' set-up, metrics
    )
    fixed_core_s: float  # the same in core-seconds (imports start BLAS/DuckDB threads)
    core_op_s: (
        float  # core-seconds of the core operation's formula (ALS, scoring, IVF); 0 where there is none
    )
    rest_core_s: float  # core-seconds per unit: reading, id maps, writing, checks (fitted from real runs)
    unit: str
    units: float

    @property
    def work_core_s(self) -> float:
        return self.core_op_s + self.rest_core_s

    @property
    def core_seconds(self) -> float:
        return self.fixed_core_s + self.work_core_s

    def wall_seconds(self, cores: int, core_op_s: float | None = None) -> float:
        """The core operation (implicit, BLAS, faiss: multi-threaded) spreads over the cores; the fixed part and
        the per-unit rest (Python, Arrow and Parquet I/O) are counted on one core. Not a measured parallel
        share: on the shared 2-core machine of the calibration, other jobs' load makes wall / CPU time say
        more about them than about the step."""
        op = self.core_op_s if core_op_s is None else core_op_s
        return self.fixed_s + self.rest_core_s + op / max(cores, 1)


def step_units(step: str, p: PlanInput, shards: int = 1) -> tuple[str, float]:
    """(unit, units of one process) of a step's per-unit rest."""
    return {
        "aggregate": ("interactions", p.interactions),
        "train": ("interactions", p.interactions),
        "index": ("items", p.items),
        "candidates": ("users", p.users / shards),
        "related": ("items", p.items / shards),
        "export": ("rows", p.export_rows),
    }[step]


def core_operation_seconds(
    step: str, p: PlanInput, cal: dict, method: str = "exact", shards: int = 1
) -> float:
    """Core-seconds of the step's core operation in one process (0 for steps whose cost is all per unit)."""
    U, n_items, D = p.users, p.items, p.factors
    if step == "train":  # ALS, then batch/evaluation.py's recommend for the evaluated users (exact, topk)
        als = als_core_seconds(U, n_items, p.interactions, D, p.iterations + p.refit_iterations, cal)
        return als + exact_core_seconds(p.evaluated_users, n_items, D, cal)
    if step == "index":  # built only for ANN; the gate scores its user sample both ways
        gate = min(INDEX_GATE_USERS, U)
        return (
            ann_build_core_seconds(n_items, D, cal)
            + exact_core_seconds(gate, n_items, D, cal)
            + ann_query_core_seconds(gate, n_items, D, cal)
        )
    if step == "candidates":
        scoring = ann_query_core_seconds if method == "ann" else exact_core_seconds
        return scoring(U / shards, n_items, D, cal)
    if step == "related":  # always exact (batch/steps/related.py: model.similar_items)
        return exact_core_seconds(n_items / shards, n_items, D, cal)
    return 0.0


def step_cost(step: str, p: PlanInput, cal: dict, method: str = "exact", shards: int = 1) -> StepCost:
    """The cost of one process of ``step`` (one of ``shards`` for a sharded step)."""
    try:
        c = cal["steps"][step]
    except KeyError:
        raise ConfigError(
            f"the calibration file has no whole-step costs for {step!r} (field 'steps.{step}')",
            hint="make bench (bench/calibrate.py) writes them",
        ) from None
    # candidates by ANN has its own per-user rest (over-fetch for seen items, faiss per-query work): fitted from
    # ANN runs (``steps.candidates.ann``), not from the exact runs
    c = c.get(method, c)
    unit, units = step_units(step, p, shards)
    return StepCost(
        step,
        c["fixed_s"],
        c["fixed_core_s"],
        core_operation_seconds(step, p, cal, method, shards),
        units * c["unit_ns"] * 1e-9,
        unit,
        units,
    )


# -- the plan ----------------------------------------------------------------------------------------------------


@dataclass
class StepPlan:
    step: str
    method: str  # exact | ann | - (the same for both)
    memory_bytes: int
    resource_class: str
    shards: int
    wall_seconds: float
    node_hours: float
    source: str = "measured"  # measured | published
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "step": self.step,
            "method": self.method,
            "memory_gib": round(self.memory_bytes / GIB, 2),
            "resource_class": self.resource_class,
            "shards": self.shards,
            "wall_seconds": round(self.wall_seconds, 1),
            "node_hours": round(self.node_hours, 3),
            "source": self.source,
            "notes": self.notes,
        }


def _smallest_class(need: int, candidates=("standard", "sharded", "highmem")) -> ResourceClass | None:
    for name in candidates:
        rc = RESOURCE_CLASSES[name]
        if need <= rc.memory_bytes:
            return rc
    return None


def _node_hours(rc: ResourceClass, pods: int, wall_s: float) -> float:
    return pods * wall_s / 3600 * rc.cores / rc.node_cores


def _too_big(memory: int, what: str) -> str:
    return (
        f"{memory / GIB:,.0f} GiB is over the highmem pod ({RESOURCE_CLASSES['highmem'].memory_bytes / GIB:.0f} GiB): "
        f"shrink {what} (IVF-PQ codes instead of full vectors, or split the index by item range and merge the "
        "per-part top-N) or raise the highmem machine type (docs/scale.md)"
    )


def _single(
    step: str, method: str, memory: int, rc: ResourceClass, cost: StepCost, notes: list[str]
) -> StepPlan:
    wall = cost.wall_seconds(rc.cores)
    return StepPlan(step, method, memory, rc.name, 1, wall, _node_hours(rc, 1, wall), "measured", notes)


def shard_count(step: str, p: PlanInput, cal: dict, method: str, cores: int) -> int:
    """Shards so that one takes at most ``max_shard_hours``: the work divides by the shards, the fixed part not."""
    whole = step_cost(step, p, cal, method, 1)
    room = p.max_shard_hours * 3600 - whole.fixed_s
    work_wall = whole.wall_seconds(cores) - whole.fixed_s
    return max(1, math.ceil(work_wall / room)) if room > 0 else 1


def _sharded(step: str, method: str, memory: int, p: PlanInput, cal: dict, notes: list[str]) -> StepPlan:
    rc = RESOURCE_CLASSES["sharded"]
    if memory > rc.memory_bytes:
        rc = RESOURCE_CLASSES["highmem"]
        notes.append("per-shard memory is over the sharded class: runs on highmem pods")
        if memory > rc.memory_bytes:
            notes.append(_too_big(memory, "the item side"))
    shards = shard_count(step, p, cal, method, rc.cores)
    wall = step_cost(step, p, cal, method, shards).wall_seconds(rc.cores)
    return StepPlan(
        step, method, memory, rc.name, shards, wall, _node_hours(rc, shards, wall), "measured", notes
    )


def plan(p: PlanInput, cal: dict | None = None) -> list[StepPlan]:
    """Per step (and per method where it matters): memory, resource class, shards, wall time, node-hours."""
    cal = cal or load_calibration()
    U, n_items, NNZ, D = p.users, p.items, p.interactions, p.factors
    out: list[StepPlan] = []

    # aggregate: the warehouse does the GROUP BY (BigQuery in the cloud); the pod holds the pairs and id maps
    agg_mem = BASE_PROCESS_BYTES + NNZ * 16 + (U + n_items) * 48
    rc = _smallest_class(agg_mem) or LARGEST_NODE
    notes = ["locally DuckDB; in the cloud BigQuery runs the SQL and the pod writes the pairs"]
    out.append(_single("aggregate", "-", agg_mem, rc, step_cost("aggregate", p, cal), notes))

    # train: CSR and its transpose (implicit builds item_users) + factors (ours, implicit's, the evaluated model's)
    csr = 2 * (NNZ * 8 + (U + n_items + 2) * 8)
    factors_b = (U + n_items) * D * 4
    train_mem = BASE_PROCESS_BYTES + csr + 3 * factors_b
    train = step_cost("train", p, cal)
    notes = [
        f"ALS: {p.iterations} iterations"
        + (f" + a {p.refit_iterations}-iteration warm refit" if p.refit_iterations else "")
    ]
    if p.evaluated_users:
        scoring = exact_core_seconds(p.evaluated_users, n_items, D, cal)
        notes.append(
            f"offline evaluation: {p.evaluated_users:,} users scored exactly over the catalogue "
            f"({scoring / 3600:,.1f} core-hours"
            + (
                ""
                if p.eval_users is not None
                else f"; {EVAL_USER_SHARE:.0%} of the users assumed active on the holdout day"
                + (
                    f", sampled down to evaluation.max_users={p.eval_max_users:,}"
                    if p.eval_max_users is not None and p.evaluated_users == p.eval_max_users
                    else ""
                )
                + "; --eval-users"
            )
            + ")"
        )
    if p.gpu_train:
        gpu = RESOURCE_CLASSES["gpu"]
        need_gpu = csr + 2 * factors_b
        speed = cal["published"]["gpu"][gpu.gpu]["als_speedup_vs_8_cores"]
        # the ALS part at the published GPU speed-up over 8 cores; the rest of the step on the pod's cores
        wall = train.wall_seconds(gpu.cores, train.core_op_s / speed)
        notes.append(f"implicit GPU ALS at {speed}x 8 CPU cores (published benchmark, not measured here)")
        if need_gpu > gpu.gpu_memory_bytes:
            notes.append(
                f"CSR + factors need {need_gpu / GIB:,.0f} GiB of GPU memory, the {gpu.gpu} has "
                f"{gpu.gpu_memory_bytes / GIB:.0f}: train on a user sample and fold the rest in (see docs/scale.md)"
            )
        out.append(
            StepPlan("train", "-", train_mem, "gpu", 1, wall, _node_hours(gpu, 1, wall), "published", notes)
        )
    else:
        rc = _smallest_class(train_mem, ("highmem",))
        if rc is None:
            rc = RESOURCE_CLASSES["highmem"]
            notes.append(
                f"needs {train_mem / GIB:,.0f} GiB: over the highmem pod ({rc.memory_bytes / GIB:.0f} GiB)"
                + (
                    f" and over the largest node ({LARGEST_NODE.node_memory_bytes / GIB:.0f} GiB, published)"
                    if train_mem > LARGEST_NODE.node_memory_bytes
                    else f"; fits a {LARGEST_NODE.machine} node ({LARGEST_NODE.node_memory_bytes / GIB:.0f} GiB, published)"
                )
                + ": train the item factors on a user sample, fold the other users in per shard (docs/scale.md)"
            )
        out.append(_single("train", "-", train_mem, rc, train, notes))

    # index: runs for ANN only (the step is disabled when candidates.method is exact)
    idx_mem = BASE_PROCESS_BYTES + n_items * D * 4 + 2 * ann_index_bytes(n_items, D)
    rc = _smallest_class(idx_mem, ("standard", "highmem"))
    idx_notes = []
    if rc is None:
        rc = RESOURCE_CLASSES["highmem"]
        idx_notes.append(_too_big(idx_mem, "the index"))
    nlist, nprobe = ann_shape(n_items, cal)
    idx_notes.insert(
        0, f"IVF-flat nlist={nlist}, nprobe={nprobe}; gate: recall@{p.n} on {INDEX_GATE_USERS:,} users"
    )
    out.append(_single("index", "ann", idx_mem, rc, step_cost("index", p, cal, "ann"), idx_notes))
    out.append(
        StepPlan("index", "exact", 0, "-", 0, 0.0, 0.0, "measured", ["not run: no index for exact scoring"])
    )

    # candidates (per method) and related (always exact): per shard, the scoring buffer or the index + the users
    shard_users_note = (
        "assumes each shard reads only its own users' factors; today every shard loads the whole model "
        f"(+{U * D * 4 / GIB:,.1f} GiB)"
    )
    # the exact scoring buffer is batch x items: shrink the batch until it fits the sharded pod
    fixed = BASE_PROCESS_BYTES + n_items * D * 4
    room = RESOURCE_CLASSES["sharded"].memory_bytes - fixed
    batch = max(16, min(p.batch_size, int(room // (2 * n_items * 4)) if room > 0 else 16))
    exact_mem = fixed + 2 * batch * n_items * 4 + batch * D * 4
    batch_note = (
        [f"candidates.batch_size {p.batch_size} -> {batch} to bound the exact score buffer"]
        if batch < p.batch_size
        else []
    )
    ann_mem = BASE_PROCESS_BYTES + ann_index_bytes(n_items, D) + p.batch_size * 1024 * 8
    out.append(_sharded("candidates", "exact", exact_mem, p, cal, [shard_users_note, *batch_note]))
    out.append(_sharded("candidates", "ann", ann_mem, p, cal, [shard_users_note]))
    related_note = "exact scoring for both candidates methods: related items never use the ANN index (batch/steps/related.py)"
    out.append(_sharded("related", "-", exact_mem, p, cal, [related_note, *batch_note]))

    # export: streams the shards' Parquet into the published files and the warehouse load
    rows = p.export_rows
    exp_mem = BASE_PROCESS_BYTES + min(rows, 10_000_000) * cal["export"]["row_bytes"]
    rc = _smallest_class(exp_mem) or RESOURCE_CLASSES["highmem"]
    out.append(_single("export", "-", exp_mem, rc, step_cost("export", p, cal), [f"{rows:,} rows"]))
    return out


def totals(steps: list[StepPlan], method: str) -> dict:
    """Critical-path wall time (shards in parallel) and node-hours of the whole batch for one method."""
    chosen = [s for s in steps if s.method in ("-", method)]
    return {
        "method": method,
        "wall_hours": round(sum(s.wall_seconds for s in chosen) / 3600, 2),
        "node_hours": round(sum(s.node_hours for s in chosen), 2),
    }


def format_plan(p: PlanInput, steps: list[StepPlan], cal: dict) -> str:
    def hms(s: float) -> str:
        return f"{s / 3600:,.1f} h" if s >= 5400 else (f"{s / 60:,.1f} min" if s >= 90 else f"{s:,.1f} s")

    m = cal.get("measured_on", {})
    lines = [
        f"plan: {p.users:,} users x {p.items:,} items, {p.interactions:,} interactions, {p.factors} factors, "
        f"N={p.n}, related N={p.related_n}, {p.iterations} ALS iterations + {p.refit_iterations} refit",
        f"per-unit costs measured on {m.get('cpu', '?')} ({m.get('date', '?')}, {m.get('cores', '?')} cores); "
        "'published' = from published figures, not measured here; wall = the step's process (start, imports, "
        "reading, writing, checks) on the class's cores, per shard",
        "",
        f"{'step':<11} {'method':<6} {'memory':>10} {'class':<9} {'shards':>6} {'wall':>10} {'node-h':>9}  source",
    ]
    for s in steps:
        mem = f"{s.memory_bytes / GIB:,.1f} GiB" if s.memory_bytes else "-"
        lines.append(
            f"{s.step:<11} {s.method:<6} {mem:>10} {s.resource_class:<9} {s.shards:>6} {hms(s.wall_seconds):>10} "
            f"{s.node_hours:>9,.2f}  {s.source}" + "".join(f"\n{'':<13}note: {n}" for n in s.notes)
        )
    lines.append("")
    for method in ("exact", "ann"):
        t = totals(steps, method)
        lines.append(
            f"total with {method:<5}: {t['wall_hours']:,.2f} h critical path, {t['node_hours']:,.2f} node-hours"
        )
    choice = choose_method(p.users, p.items, p.factors, p.n, "sharded", cal)
    lines.append(f"candidates.method auto -> {choice.method}: {choice.reason}")
    return "\n".join(lines)
