"""train: interactions -> a model artifact (factors, id maps, metadata) with offline metrics.

Offline evaluation is temporal: a model fit on the window minus the holdout days (``weight_train``) recommends
for the users who interacted with items in the holdout days that they had not touched before ("new items
only"); those items are the relevant set. The popularity baseline is scored on the same split, so every model's
metrics come with the bar it has to clear. The served model then continues from the evaluated one for
``evaluation.refit_iterations`` passes over the whole window (a warm start), or, with ``refit_iterations: null``
or evaluation off, is fit from scratch on the whole window.

With ``incremental.enabled`` the model may instead continue from its parent's factors (the model behind the
last publish), matched by id, and a drift guard refits fully when it strays (batch/incremental.py,
docs/incremental.md); the metadata records the kind of fit, its reason and the chain.

Outputs (dataset ``model``): ``model.npz`` (the model's own format), ``users.parquet`` and ``items.parquet``
(the id maps the factors are indexed by), ``metrics.json``, ``metadata.json``.
"""

from __future__ import annotations

import hashlib
import logging
import platform
import time
from importlib import metadata as importlib_metadata

import numpy as np
import pandas as pd

import models
from batch import datasets, incremental
from batch.context import StepContext
from batch.datasets import INTERACTIONS, MODEL, to_csr
from batch.evaluation import evaluate, holdout_split, sample_users, score
from batch.graph import step
from batch.metrics_store import numbers, timing_rows

log = logging.getLogger(__name__)


def data_fingerprint(inter: pd.DataFrame) -> str:
    h = hashlib.sha256()
    for col in ("user_idx", "item_idx", "weight"):
        h.update(np.ascontiguousarray(inter[col].to_numpy()).tobytes())
    return h.hexdigest()[:16]


def library_versions() -> dict:
    out = {"python": platform.python_version()}
    for dist in ("implicit", "numpy", "scipy", "pandas", "pyarrow", "duckdb"):
        try:
            out[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            pass
    return out


def metric_rows(result: dict) -> list:
    metrics = result.get("metrics") or {}
    rows: list = [(k, None, v) for k, v in numbers(metrics.get("model") or {})]
    rows += [
        (k, {"model": "popularity_baseline"}, v) for k, v in numbers(metrics.get("popularity_baseline") or {})
    ]
    if result.get("incremental"):
        rows.append(("fit_incremental", None, float(result["incremental"]["kind"] == "incremental")))
    return rows + timing_rows(result.get("timings"))


def summarize(meta: dict) -> dict:
    out = {
        "model": {
            "version": meta.get("model_version"),
            "type": meta.get("model_type"),
            "params": meta.get("params"),
        },
        "metrics": meta.get("metrics", {}),
    }
    if meta.get("incremental"):
        out["incremental"] = meta["incremental"]
    return out


@step(
    name="train",
    reads=(INTERACTIONS,),
    writes=MODEL,
    resources="highmem",
    metrics=metric_rows,
    summarize=summarize,
    description="interactions -> model + offline metrics",
)
def run(ctx: StepContext) -> dict:
    cfg = ctx.pipeline
    started = time.perf_counter()
    agg = datasets.interactions(ctx)
    src = agg.src
    inter = agg.frame()
    users = agg.users()
    items = agg.items()
    n_users, n_items = users.num_rows, items.num_rows
    read_s = time.perf_counter() - started

    timings = {"read_s": round(read_s, 3)}
    plan = incremental.plan_fit(ctx)
    timings["plan_s"] = round(time.perf_counter() - started - read_s, 3)
    user_ids = users.column("user_id").to_numpy(zero_copy_only=False)
    item_ids = items.column("item_id").to_numpy(zero_copy_only=False)
    drift: dict | None = None
    if plan.incremental:
        metrics, model, fit_mode, warm, same_split = fit_warm(ctx, plan, inter, user_ids, item_ids, timings)
        drift = drift_guard(ctx, plan, same_split, model, inter, user_ids, item_ids, items)
        drift["warm_start"] = warm
        if drift["triggered"]:
            message = (
                f"drift guard: the warm-started model drifted from its parent {plan.parent.version} "
                f"({'; '.join(drift['reasons'])}); refit fully in the same run"
            )
            log.warning("incremental: drift guard refit", extra={"reasons": drift["reasons"]})
            plan = incremental.full(message, plan.parent_ref, warnings=[*plan.warnings, message])
    if not plan.incremental:
        metrics, model, fit_mode = fit_full(ctx, inter, n_users, n_items, timings)
    timings["total_s"] = round(time.perf_counter() - started, 3)

    model_version = f"{cfg.name}-{ctx.session_date:%Y%m%d}-{ctx.run_id}"
    meta = {
        "model_version": model_version,
        "fit_mode": fit_mode,
        "incremental": {
            **incremental.chain_record(
                plan, ctx.session_date, model_version, plan.parent.metadata if plan.parent else None
            ),
            **({"drift_guard": drift} if drift is not None else {}),
        },
        "model_type": cfg.model.type,
        "params": model.params,
        "seed": cfg.model.seed,
        "data_fingerprint": data_fingerprint(inter),
        "source_run_id": src.run_id,
        "n_users": n_users,
        "n_items": n_items,
        "n_interactions": int((inter["weight"] > 0).sum()),
        "library_versions": library_versions(),
        "timings": timings,
    }
    with ctx.store.writer(cfg.name, MODEL, ctx.session_date, run_id=ctx.run_id) as w:
        with w.open("model.npz") as f:
            model.save(f)
        w.write_parquet("users.parquet", users)
        w.write_parquet("items.parquet", items)
        w.write_json("metrics.json", metrics)
        w.write_json("metadata.json", meta)
        w.metadata.update(
            {
                "run": ctx.run_record(),
                "model_version": model_version,
                "metrics": metrics,
                "timings": timings,
                "params": model.params,
                "model_type": cfg.model.type,
                "incremental": meta["incremental"],
            }
        )
    log.info(
        "train done",
        extra={
            "pipeline": cfg.name,
            "dt": str(ctx.session_date),
            "model_version": model_version,
            **{f"timing_{k}": v for k, v in timings.items()},
        },
    )
    return {
        "model_version": model_version,
        "metrics": metrics,
        "timings": timings,
        "incremental": {"kind": plan.kind, "reason": plan.reason},
    }


def fit_full(ctx: StepContext, inter: pd.DataFrame, n_users: int, n_items: int, timings: dict):
    """(metrics, served model, fit mode): offline evaluation of a fresh fit, then the served model."""
    cfg = ctx.pipeline
    metrics: dict = {}
    evaluated = None
    if cfg.evaluation.enabled:
        t = time.perf_counter()
        train_m, relevant = holdout_split(inter, n_users, n_items)
        relevant = sample_users(relevant, cfg.evaluation.max_users, cfg.model.seed)
        ks = cfg.evaluation.ks
        metrics["model"], evaluated = evaluate(
            cfg.model.type,
            cfg.model.params,
            cfg.model.seed,
            train_m,
            relevant,
            ks,
            show_progress=ctx.show_progress,
        )
        metrics["popularity_baseline"], _ = evaluate("popularity", {}, cfg.model.seed, train_m, relevant, ks)
        metrics["holdout"] = {
            "days": cfg.evaluation.holdout_days,
            "relevant_pairs": int(relevant.nnz),
            "max_users": cfg.evaluation.max_users,
        }
        timings["evaluate_s"] = round(time.perf_counter() - t, 3)

    t = time.perf_counter()
    full = to_csr(inter, "weight", n_users, n_items)
    refit = cfg.evaluation.refit_iterations if cfg.evaluation.enabled else None
    if refit:
        # warm start: the evaluated model already fit everything but the holdout days; a few more passes over
        # the whole window take them in (bench: same next-day nDCG as a fresh fit, ~1/3 of its time)
        model = evaluated.fit_more(full, iterations=refit, show_progress=ctx.show_progress)
        fit_mode = f"warm start from the evaluated model, {refit} iterations"
    else:
        fit_mode = "fresh fit"
        model = models.create_model(cfg.model.type, seed=cfg.model.seed, **cfg.model.params)
        model.fit(full, show_progress=ctx.show_progress)
    timings["fit_s"] = round(time.perf_counter() - t, 3)
    return metrics, model, fit_mode


def fit_warm(
    ctx: StepContext,
    plan: incremental.FitPlan,
    inter: pd.DataFrame,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    timings: dict,
):
    """(metrics, served model, fit mode, warm-start counts, the warm model and its parent on the same split) of
    an incremental run: the parent's factors matched by id, ``incremental.iterations`` passes over the window
    minus the holdout (evaluated, as a full run is), then ``incremental.refit_iterations`` over the whole window
    (served)."""
    cfg = ctx.pipeline
    iterations, refit = cfg.incremental.iterations, cfg.incremental.refit_iterations
    n_users, n_items = len(user_ids), len(item_ids)
    metrics: dict = {}
    t = time.perf_counter()
    model = models.create_model(cfg.model.type, seed=cfg.model.seed, **cfg.model.params)
    warm = model.start_from(
        plan.parent.model,
        parent_user_ids=plan.parent.user_ids,
        parent_item_ids=plan.parent.item_ids,
        user_ids=user_ids,
        item_ids=item_ids,
    )
    same_split: dict = {}
    if cfg.evaluation.enabled:
        train_m, relevant = holdout_split(inter, n_users, n_items)
        max_users = incremental_eval_users(cfg)
        relevant = sample_users(relevant, max_users, cfg.model.seed)
        ks = cfg.evaluation.ks
        model.fit_more(train_m, iterations=iterations, show_progress=ctx.show_progress)
        metrics["model"], users, ids = score(model, train_m, relevant, ks)
        metrics["popularity_baseline"], _ = evaluate("popularity", {}, cfg.model.seed, train_m, relevant, ks)
        metrics["holdout"] = {
            "days": cfg.evaluation.holdout_days,
            "relevant_pairs": int(relevant.nnz),
            "max_users": max_users,
        }
        if cfg.incremental.drift.enabled and cfg.checks.model.metric.enabled:
            same_split = incremental.parent_on_same_split(
                plan.parent, user_ids, item_ids, train_m, relevant, users, ids, ks
            )
        timings["evaluate_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    model.fit_more(
        to_csr(inter, "weight", n_users, n_items), iterations=refit, show_progress=ctx.show_progress
    )
    timings["fit_s"] = round(time.perf_counter() - t, 3)
    return (
        metrics,
        model,
        f"warm start from parent {plan.parent.version} by id, "
        + (f"{iterations} + {refit} iterations" if cfg.evaluation.enabled else f"{refit} iterations"),
        warm,
        same_split,
    )


def incremental_eval_users(cfg) -> int | None:
    """Users an incremental day's evaluation scores: ``incremental.evaluation_max_users`` within
    ``evaluation.max_users`` (null: the latter)."""
    cap, inc = cfg.evaluation.max_users, cfg.incremental.evaluation_max_users
    if inc is None:
        return cap
    return inc if cap is None else min(cap, inc)


def drift_guard(
    ctx: StepContext,
    plan: incremental.FitPlan,
    same_split: dict,
    model: models.Recommender,
    inter: pd.DataFrame,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    items,
) -> dict:
    """Did the warm-started model drift from its parent? (its offline metric below the parent's on the same
    split beyond the model gate's tolerance, overlap@k below ``incremental.drift.min_overlap``)"""
    cfg = ctx.pipeline
    guard = cfg.incremental.drift
    out: dict = {"enabled": guard.enabled, "triggered": False, "reasons": []}
    if not guard.enabled:
        return out
    gate_metric = cfg.checks.model.metric
    if cfg.evaluation.enabled and gate_metric.enabled:
        m = incremental.metric_drift(same_split, gate_metric)
        out["metric"] = m
        if m["status"] == "drop":
            out["reasons"].append(
                f"{m['metric']} {m['value']:.4f} below {m['floor']:.4f}: the parent scored {m['parent']:.4f} "
                f"on the same split ({m['users']} users; tolerance {gate_metric.max_relative_drop:g})"
            )
    available = items.column("available").to_numpy(zero_copy_only=False)
    overlap, n = incremental.overlap_with_parent(
        model,
        plan.parent,
        user_ids,
        item_ids,
        to_csr(inter, "weight", len(user_ids), len(item_ids)),
        np.flatnonzero(~available).astype(np.int32),
        k=guard.k,
        sample_users=guard.sample_users,
        seed=cfg.model.seed,
    )
    out["overlap"] = {"mean": overlap, "users": n, "k": guard.k, "floor": guard.min_overlap}
    if overlap is not None and n >= guard.min_users and overlap < guard.min_overlap:
        out["reasons"].append(
            f"mean overlap@{guard.k} with the parent {overlap:.3f} < floor {guard.min_overlap:g}"
        )
    out["triggered"] = bool(out["reasons"])
    return out
