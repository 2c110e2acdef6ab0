"""Incremental daily runs: which model a warm start chains from, when a run must be a full fit, and the drift
guard's measurements (docs/incremental.md).

The parent of a session date's model is the model behind the last publish before that date
(``store.reference_model``): a model that passed its gates and served. A run is a full fit when incremental runs
are off, on the first run, when the parent is missing or cannot be read (a warning, never a crash), is older than
the window, was refused by a gate (or a later model was, since: the chain restarts), saw the holdout days, was
made with another model type or factor count, in a backfill (a model newer than the session date is in
service: a model never starts from one that saw later days) and every ``incremental.full_every_days``.

This module knows steps only through the datasets they write; it never imports a step or a check.
"""

from __future__ import annotations

import logging
import posixpath
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd
import scipy.sparse as sp

import models
from batch.context import StepContext
from batch.datasets import MODEL
from batch.errors import ArtifactError
from batch.evaluation import ranking_metrics
from batch.graph import GRAPH
from batch.storage import Committed
from models.factor import FactorRecommender

log = logging.getLogger(__name__)

FULL = "full"
INCREMENTAL = "incremental"


@dataclass
class Parent:
    """The model a warm start chains from, loaded."""

    record: dict  # the promotion record (dt, model_version, run_dir, metrics, ...)
    model: models.Recommender
    user_ids: np.ndarray
    item_ids: np.ndarray
    metadata: dict  # its metadata.json

    @property
    def dt(self) -> date:
        return date.fromisoformat(self.record["dt"])

    @property
    def version(self) -> str:
        return self.record.get("model_version", "")


@dataclass
class FitPlan:
    kind: str  # FULL or INCREMENTAL
    reason: str
    parent: Parent | None = None
    parent_ref: dict | None = None  # the reference record even when the run is full (the chain shows it)
    last_full_dt: date | None = None  # the chain's last full fit (this run's date when full)
    warnings: list[str] = field(default_factory=list)

    @property
    def incremental(self) -> bool:
        return self.kind == INCREMENTAL


def full(reason: str, ref: dict | None = None, warnings: list[str] | None = None) -> FitPlan:
    return FitPlan(FULL, reason, parent_ref=ref, warnings=list(warnings or []))


def _run_id_of(run_dir: str) -> str:
    return posixpath.basename(run_dir.rstrip("/")).removeprefix("run=")


def _model_partition(ctx: StepContext, record: dict) -> Committed:
    """The parent's files, checked against its commit marker when the marker still names the published run (a
    rerun of that date may have moved it on: the published run directory is kept, read it as recorded)."""
    dt = date.fromisoformat(record["dt"])
    run_dir = ctx.store.resolve(record["run_dir"])  # records hold paths relative to the artifact root
    try:
        c = ctx.store.committed(ctx.name, MODEL, dt, step="train")
        if c.run_dir.rstrip("/") == run_dir.rstrip("/"):
            return c
    except ArtifactError:
        pass
    names = ("model.npz", "users.parquet", "items.parquet", "metadata.json")
    marker = {"run_id": _run_id_of(run_dir), "files": {n: None for n in names}}
    return Committed(ctx.store.fs, posixpath.dirname(run_dir), run_dir, marker, "train")


def load_parent(ctx: StepContext, record: dict) -> Parent:
    src = _model_partition(ctx, record)
    with src.open("model.npz") as f:
        model = models.load_model(f)
    users = (
        src.read_parquet("users.parquet", columns=["user_id"])
        .column("user_id")
        .to_numpy(zero_copy_only=False)
    )
    items = (
        src.read_parquet("items.parquet", columns=["item_id"])
        .column("item_id")
        .to_numpy(zero_copy_only=False)
    )
    try:
        meta = src.read_json("metadata.json")
    except ArtifactError:
        meta = {}
    return Parent(record, model, users, items, meta if isinstance(meta, dict) else {})


def refused_since(ctx: StepContext, ref: dict) -> str | None:
    """Why the chain may not continue from ``ref`` because a blocking gate on train refused a model: the parent
    itself, or a model of a later date before the session date. None when nothing was refused."""
    if ref.get("refused") or ref.get("rolled_back"):
        return f"the parent model {ref.get('model_version')} was withdrawn ({'refused' if ref.get('refused') else 'rolled back'})"
    gates = [g for g in GRAPH.gates() if g.guards == "train" and g.blocking]
    start = date.fromisoformat(ref["dt"])
    parent_run = _run_id_of(ref.get("run_dir", ""))
    d = start
    while d < ctx.session_date:
        for g in gates:
            try:
                verdict = ctx.store.committed(ctx.name, g.dataset, d, step=g.guards)
            except ArtifactError:
                continue
            meta = verdict.metadata
            if meta.get("passed", True):
                continue
            if d == start and meta.get("source_run_id") != parent_run:
                continue  # a rerun of the parent's date was refused, not the parent
            which = "the parent model" if d == start else f"the model of {d}"
            return f"{which} was refused by the {g.name}; the chain restarts with a full fit"
        d += timedelta(days=1)
    return None


def plan_fit(ctx: StepContext) -> FitPlan:
    """Full or incremental for this session date, and why; loads the parent of an incremental run."""
    cfg = ctx.pipeline
    inc = cfg.incremental
    if not inc.enabled:
        return full("incremental runs are off (incremental.enabled: false)")
    in_service = ctx.store.promoted_model(ctx.name)
    if in_service is not None and in_service["dt"] > ctx.session_date.isoformat():
        return full(
            f"backfill: the model of {in_service['dt']} is in service, later than {ctx.session_date}; a model "
            "never starts from one that saw later days"
        )
    ref = ctx.store.reference_model(ctx.name, ctx.session_date)
    if ref is None:
        return full(f"first run: no model was published before {ctx.session_date}")
    parent_dt = date.fromisoformat(ref["dt"])
    if parent_dt >= ctx.session_date:  # never, by reference_model's contract; a model must not see its future
        return full(f"the parent of {parent_dt} is not older than {ctx.session_date}", ref)
    window_start = ctx.session_date - timedelta(days=cfg.aggregate.lookback_days - 1)
    if parent_dt < window_start:
        return full(
            f"the parent of {parent_dt} is older than the {cfg.aggregate.lookback_days}-day window "
            f"(starting {window_start})",
            ref,
        )
    refused = refused_since(ctx, ref)
    if refused:
        return full(refused, ref)
    if cfg.evaluation.enabled:
        holdout_start = ctx.session_date - timedelta(days=cfg.evaluation.holdout_days - 1)
        if parent_dt >= holdout_start:
            return full(
                f"the parent of {parent_dt} saw the holdout days (from {holdout_start}): its warm start would "
                "leak them into the offline evaluation",
                ref,
            )
    try:
        parent = load_parent(ctx, ref)
    except Exception as e:  # a corrupt or missing parent is a full fit, never a crash
        message = (
            f"the parent model {ref.get('model_version')} of {parent_dt} cannot be read "
            f"({type(e).__name__}: {e}); full fit"
        )
        log.warning(
            "incremental: parent unreadable", extra={"parent": ref.get("model_version"), "error": str(e)}
        )
        return full(message, ref, warnings=[message])
    if parent.model.model_type != cfg.model.type or not isinstance(parent.model, FactorRecommender):
        return full(
            f"the parent is a {parent.model.model_type!r} model; warm starts need {cfg.model.type!r} factors",
            ref,
        )
    want = models.create_model(cfg.model.type, seed=cfg.model.seed, **cfg.model.params).params
    if parent.model.params.get("factors") != want.get("factors"):
        return full(
            f"model.params.factors changed ({parent.model.params.get('factors')} -> {want.get('factors')})",
            ref,
        )
    chain = parent.metadata.get("incremental") or {}
    last_full = chain.get("last_full_dt") or (ref["dt"] if chain.get("kind", FULL) == FULL else None)
    if last_full is None:
        return full("the parent's chain does not record its last full fit", ref)
    last_full_dt = date.fromisoformat(last_full)
    if (ctx.session_date - last_full_dt).days >= inc.full_every_days:
        return full(
            f"scheduled: the last full fit was {last_full_dt}, one is due every {inc.full_every_days} days",
            ref,
        )
    return FitPlan(
        INCREMENTAL,
        f"warm start from {parent.version} ({parent_dt}), {inc.iterations} + {inc.refit_iterations} iterations",
        parent=parent,
        parent_ref=ref,
        last_full_dt=last_full_dt,
    )


def chain_record(plan: FitPlan, session_date: date, model_version: str, parent_meta: dict | None) -> dict:
    """What the model's metadata says about its chain: kind, reason, parent, last full fit, the links since it."""
    previous = ((parent_meta or {}).get("incremental") or {}).get("chain") or []
    link = {"dt": session_date.isoformat(), "model_version": model_version, "kind": plan.kind}
    chain = [*previous, link] if plan.incremental else [link]
    ref = plan.parent_ref
    return {
        "kind": plan.kind,
        "reason": plan.reason,
        "parent": ref and {"model_version": ref.get("model_version"), "dt": ref.get("dt")},
        "last_full_dt": (plan.last_full_dt if plan.incremental else session_date).isoformat(),
        "chain": chain[-60:],
        "warnings": list(plan.warnings),
    }


# -- the drift guard's measurements ---------------------------------------------------------------------------


def aligned_parent(
    parent: Parent, user_ids: np.ndarray, item_ids: np.ndarray
) -> tuple[models.Recommender, np.ndarray, np.ndarray]:
    """(the parent's factors re-indexed to today's ids, users it knew, items it knew): today's ids it never saw
    get the seeded initialisation, so callers rank only known items for known users."""
    aligned = models.create_model(parent.model.model_type, **parent.model.params)
    aligned.start_from(
        parent.model,
        parent_user_ids=parent.user_ids,
        parent_item_ids=parent.item_ids,
        user_ids=user_ids,
        item_ids=item_ids,
    )
    known_user = pd.Index(parent.user_ids).get_indexer(user_ids) >= 0
    known_item = pd.Index(parent.item_ids).get_indexer(item_ids) >= 0
    return aligned, known_user, known_item


def parent_on_same_split(
    parent: Parent,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    train: sp.csr_matrix,
    relevant: sp.csr_matrix,
    users: np.ndarray,
    warm_ids: np.ndarray,
    ks: list[int],
) -> dict:
    """The warm-started model and its parent on today's holdout split, over the same evaluated users (those the
    parent knew): {"model": metrics, "parent": metrics, "users": n}. ``warm_ids`` are the warm model's lists of
    ``users`` (from its evaluation); the parent ranks only items it knew. Comparing on the same day cancels how
    hard the day is (the popularity baseline's nDCG can jump 50 % from one day to the next)."""
    aligned, known_user, known_item = aligned_parent(parent, user_ids, item_ids)
    rows = np.flatnonzero(known_user[users])
    if len(rows) == 0:
        return {"users": 0}
    k = max(ks)
    old_ids, _ = aligned.recommend(
        users[rows],
        train[users[rows]],
        k,
        filter_already_liked_items=True,
        filter_items=np.flatnonzero(~known_item).astype(np.int32),
    )
    sub = relevant[users[rows]]
    return {
        "model": ranking_metrics(warm_ids[rows], sub, ks=ks, n_catalog_items=train.shape[1]),
        "parent": ranking_metrics(old_ids, sub, ks=ks, n_catalog_items=train.shape[1]),
        "users": len(rows),
    }


def metric_drift(same_split: dict, gate_cfg) -> dict:
    """{"status": "ok"|"drop"|"skipped", ...}: the warm-started model's metric (the model gate's) against its
    parent's on the same split and users (``parent_on_same_split``), with the gate's tolerance."""
    n = same_split.get("users", 0)
    new_v = (same_split.get("model") or {}).get(gate_cfg.metric)
    old_v = (same_split.get("parent") or {}).get(gate_cfg.metric)
    if new_v is None or old_v is None or n < gate_cfg.min_users_evaluated:
        return {"status": "skipped", "value": new_v, "parent": old_v, "users": n}
    floor = old_v * (1 - gate_cfg.max_relative_drop)
    return {
        "status": "ok" if new_v >= floor else "drop",
        "value": new_v,
        "parent": old_v,
        "floor": floor,
        "metric": gate_cfg.metric,
        "compare": "parent on the same split",
        "users": n,
    }


def overlap_with_parent(
    new_model: models.Recommender,
    parent: Parent,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    seen: sp.csr_matrix,
    unavailable: np.ndarray,
    *,
    k: int,
    sample_users: int,
    seed: int,
) -> tuple[float | None, int]:
    """(mean overlap@k between the new model's and the parent's top-k, users compared) over a seeded sample of
    returning users (known to the parent, with history today). The parent ranks only items it knew."""
    aligned, known_user, known_item = aligned_parent(parent, user_ids, item_ids)
    candidates = np.flatnonzero(known_user & (np.diff(seen.indptr) > 0)).astype(np.int32)
    if len(candidates) == 0:
        return None, 0
    rng = np.random.default_rng(seed)
    if len(candidates) > sample_users:
        candidates = np.sort(rng.choice(candidates, sample_users, replace=False))
    rows = seen[candidates]
    new_ids, _ = new_model.recommend(
        candidates, rows, k, filter_already_liked_items=True, filter_items=unavailable
    )
    parent_filter = np.union1d(unavailable, np.flatnonzero(~known_item)).astype(np.int32)
    old_ids, _ = aligned.recommend(
        candidates, rows, k, filter_already_liked_items=True, filter_items=parent_filter
    )
    overlaps = [len(set(a[a >= 0]) & set(b[b >= 0])) / k for a, b in zip(new_ids, old_ids, strict=True)]
    return float(np.mean(overlaps)), len(candidates)
