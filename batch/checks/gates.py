"""The gates of the standard graph: which step's output each guards, and how it gets what it judges.

Each gate reads the guarded output through batch.datasets (never through the step's module) and hands it to the
pure checks of its module (data.py, model_gate.py, ann.py, publish.py); batch.execute commits the verdict, records the
figures, alerts and, for a blocking gate that failed, stops the batch and refuses the output to later steps.
Importing this module registers the gates.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from batch import datasets, metrics_store
from batch.checks import ann, data, model_gate, publish
from batch.checks.data import CheckResult
from batch.context import StepContext
from batch.datasets import to_csr
from batch.graph import GateOutcome, gate


@gate(name="data checks", guards="aggregate", dataset="quality_data", file="checks.json")
def data_checks(ctx: StepContext, result: dict) -> GateOutcome:
    """Is the day's input fit to train on? (volume against the metric store's history of previous runs)"""
    cfg = ctx.pipeline.checks
    src = datasets.interactions(ctx)
    stats = src.stats
    hist = metrics_store.safe_history(
        ctx.env,
        cfg.anomaly.table,
        ctx.name,
        since=ctx.session_date - timedelta(days=cfg.data.volume.window_days),
        until=ctx.session_date - timedelta(days=1),
    )
    results = data.run_checks(
        stats,
        ctx.session_date,
        ctx.window.end,
        cfg.data,
        metrics_store.series(hist, "aggregate", "events_session_day"),
    )
    extra = data.check_metrics(stats, ctx.session_date, ctx.window.end)
    return GateOutcome(
        results, metrics=[(k, None, v) for k, v in extra.items()], source_run_id=src.src.run_id
    )


@gate(name="model gate", guards="train", dataset="quality_model", file="gate.json")
def model_checks(ctx: StepContext, result: dict) -> GateOutcome:
    """Does the new model hold up against the one in service? (offline metric, overlap, score shift)"""
    cfg = ctx.pipeline.checks
    model = datasets.model(ctx)
    users = model.users()
    items = model.items()
    inter = datasets.interactions(ctx).frame(columns=["user_idx", "item_idx", "weight"])
    cand = model_gate.Candidate(
        model=model.load(),
        metrics=model.metadata.get("metrics") or {},
        model_version=model.version,
        user_ids=users["user_id"].to_numpy(),
        item_ids=items["item_id"].to_numpy(),
        seen=to_csr(inter, "weight", len(users), len(items)),
        unavailable=items.loc[~items["available"], "item_idx"].to_numpy(np.int32),
    )
    results, info = model_gate.run_gate(
        cand, ctx.store, ctx.name, ctx.session_date, cfg.model, seed=ctx.pipeline.model.seed
    )
    # an incremental run that fell back to a full fit (drift guard, unreadable parent) alerts as a warning
    results += [
        data.CheckResult("incremental", "warn", None, "", message, "warn")
        for message in (model.metadata.get("incremental") or {}).get("warnings", [])
    ]
    return GateOutcome(results, {"model_version": cand.model_version, **info}, source_run_id=model.src.run_id)


@gate(name="index check", guards="index", dataset="quality_index", file="index_check.json", blocking=True)
def index_check(ctx: StepContext, result: dict) -> GateOutcome:
    """Does the ANN index answer like exact scoring (recall@N on a seeded user sample), and is it complete?"""
    cfg = ctx.pipeline
    built = datasets.index(ctx)
    if built.method != "ann":
        reason = built.src.metadata.get("reason", "")
        skipped = CheckResult(
            "index_recall", "skipped", None, "-", f"no index: candidates are exact ({reason})"
        )
        return GateOutcome([skipped], {"method": built.method}, source_run_id=built.src.run_id)
    model_art = datasets.model(ctx)
    built.check_made_from(ctx, model_art.version)
    model = model_art.load()
    items = model_art.items(columns=["item_idx", "available"])
    available = np.zeros(model.n_items, dtype=bool)
    available[items.loc[items["available"], "item_idx"].to_numpy()] = True
    results, figures = ann.validate_index(
        built.load(),
        model.user_factors,
        model.item_factors,
        available,
        cfg.candidates.n,
        sample=cfg.checks.index.sample_users,
        seed=cfg.model.seed,
        min_recall=cfg.checks.index.min_recall,
    )
    rows = [(k, None, float(v)) for k, v in figures.items() if isinstance(v, int | float) and k != "seed"]
    return GateOutcome(
        results, {"method": "ann", "figures": figures}, metrics=rows, source_run_id=built.src.run_id
    )


@gate(name="publish check", guards="export", dataset="quality_publish", file="publish_check.json")
def publish_check(ctx: StepContext, result: dict) -> GateOutcome:
    """May the staged export become "latest"? (shape of the lists, coverage, change from the previous publish)"""
    export = datasets.committed(ctx, datasets.EXPORT)
    stats = dict(export.metadata.get("stats") or {})
    previous = ctx.store.previous_publish(ctx.name, ctx.session_date)
    failures = publish.evaluate(stats, stats.get("expected_users", 0), previous, ctx.pipeline.checks.publish)
    results = publish.as_results(failures, stats)
    info = {"stats": stats, "previous": previous and {"dt": previous["dt"], "stats": previous.get("stats")}}
    return GateOutcome(results, info, source_run_id=export.run_id)
