"""index: the model -> the method user candidates are scored with, and for ``ann`` an index over the item factors.

Enabled when ``candidates.method`` is ``ann`` or ``auto``. With ``auto`` the choice is made here, once per run, by
:func:`batch.capacity.choose_method` from the model's size (users, available items, factors), N and the
candidates step's resource class; with ``ann`` it is ann. The choice and its reason are recorded in the
partition's metadata and in the summary (``candidates_method``), so every candidates shard reads the same answer.

For ``ann`` it builds :func:`models.ann.build_index` over the available items' factors with ``candidates.ann``
(:class:`models.ann.AnnParams`; the seed defaults to the model's) and commits ``index.npz`` atomically, with the
index's ``describe()`` (resolved parameters, size, build seconds) in the metadata. The index check
(batch/checks/gates.py) judges it before any candidates shard may read it. A model whose factors hold NaN or inf
is refused here, naming the model artifact and the train step.

Output: dataset ``index`` (one partition per date): ``index.npz`` (method ``ann`` only).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from batch import capacity, datasets
from batch.config import PipelineConfig
from batch.context import StepContext
from batch.datasets import INDEX, INDEX_FILE, MODEL
from batch.errors import ConfigError, CorruptArtifactError
from batch.graph import GRAPH, step
from models.ann import AnnParams, build_index, check_finite

log = logging.getLogger(__name__)

SCORED_STEP = "candidates"  # the step whose scoring method this step decides


def wants_index(pipeline: PipelineConfig) -> bool:
    return pipeline.candidates.method in ("ann", "auto")


def ann_params(pipeline: PipelineConfig) -> AnnParams:
    return AnnParams.from_dict({"seed": pipeline.model.seed, **pipeline.candidates.ann})


def decide(ctx: StepContext, n_users: int, n_available: int, factors: int) -> tuple[str, str]:
    """(method, reason) for the candidates step of this run."""
    cfg = ctx.pipeline.candidates
    if cfg.method == "ann":
        return "ann", "candidates.method is ann"
    k8s_class = GRAPH.step(SCORED_STEP).resource_class(ctx.pipeline)
    choice = capacity.choose_method(
        max(n_users, 1), max(n_available, 1), factors, cfg.n, capacity.capacity_class(k8s_class)
    )
    return choice.method, f"auto: {choice.reason}"


def summarize(meta: dict) -> dict:
    return {
        "candidates_method": {
            "requested": meta.get("requested"),
            "method": meta.get("method"),
            "reason": meta.get("reason"),
            "index": meta.get("index"),
        }
    }


@step(
    name="index",
    reads=(MODEL,),
    writes=INDEX,
    resources="highmem",
    enabled=wants_index,
    summarize=summarize,
    description="model -> candidates method (+ ANN index over the available items)",
)
def run(ctx: StepContext) -> dict:
    cfg = ctx.pipeline
    started = time.perf_counter()
    model_art = datasets.model(ctx)
    model = model_art.load()
    items = model_art.items(columns=["item_idx", "available"])
    available = np.zeros(model.n_items, dtype=bool)
    available[items.loc[items["available"], "item_idx"].to_numpy()] = True
    item_factors, user_factors = model.item_factors, model.user_factors
    if item_factors is None or user_factors is None:
        raise ConfigError(
            f"field 'candidates.method' is {cfg.candidates.method}, but model type {cfg.model.type!r} has no "
            "factors to index",
            hint="set candidates.method: exact, or use a factor model (als, bpr)",
        )
    try:
        check_finite(item_factors, "item factors")
        check_finite(user_factors, "user factors")
    except ValueError as e:
        raise CorruptArtifactError(
            f"the model's {e}", path=model_art.src.path("model.npz"), step=model_art.src.step
        ) from None

    method, reason = decide(ctx, model.n_users, int(available.sum()), item_factors.shape[1])
    meta: dict = {
        "run": ctx.run_record(),
        "model_version": model_art.version,
        "requested": cfg.candidates.method,
        "method": method,
        "reason": reason,
    }
    counts = {"ann": int(method == "ann"), "items_indexed": 0}
    stats: dict = {}
    with ctx.store.writer(ctx.name, INDEX, ctx.session_date, run_id=ctx.run_id) as w:
        if method == "ann":
            avail_idx = np.flatnonzero(available).astype(np.int32)
            index = build_index(
                item_factors[avail_idx], avail_idx, n_items=model.n_items, params=ann_params(cfg)
            )
            with w.open(INDEX_FILE) as f:
                index.save(f)
            meta["index"] = index.describe()
            counts["items_indexed"] = index.size
            stats["build_seconds"] = float(index.build_info.get("build_seconds", 0.0))
        timings = {"total_s": round(time.perf_counter() - started, 3)}
        w.metadata.update({**meta, "counts": counts, "timings": timings})
    log.info(
        "index done",
        extra={
            "pipeline": ctx.name,
            "dt": str(ctx.session_date),
            "method": method,
            "reason": reason,
            **counts,
        },
    )
    return {"method": method, "reason": reason, "counts": counts, "stats": stats, "timings": timings}
