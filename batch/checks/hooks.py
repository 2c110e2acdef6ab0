"""Quality hooks around every step (docs/quality.md): what Step.run calls before and after a step's own work.

A step refuses inputs that a gate stopped; data checks run after aggregate, the model gate after train; every
non-sharded step records its metrics; export promotes the published model, writes the run report and scans for
anomalies. A gate that fails raises CheckFailedError (exit 3) after alerting, so nothing downstream runs.
"""

from __future__ import annotations

import pyarrow.compute as pc

from batch.context import StepContext
from batch.errors import CheckFailedError

QUALITY_DATA = "quality_data"  # dataset: checks.json of the data checks, per date
QUALITY_MODEL = "quality_model"  # dataset: gate.json of the model gate, per date


def _committed_or_none(ctx: StepContext, dataset: str):
    from batch.errors import ArtifactError

    try:
        return ctx.store.committed(ctx.name, dataset, ctx.session_date, step=dataset)
    except ArtifactError:
        return None


def before_step(name: str, ctx: StepContext) -> None:
    """Refuse an input that a gate stopped (a manual rerun of a later step must not serve it either)."""
    if name == "aggregate":
        return
    gate, upstream = (QUALITY_DATA, "interactions") if name == "train" else (QUALITY_MODEL, "model")
    result = _committed_or_none(ctx, gate)
    source = _committed_or_none(ctx, upstream)
    if result is None or source is None:
        return
    meta = result.metadata
    if not meta.get("passed", True) and meta.get("source_run_id") == source.run_id:
        what = "data checks" if gate == QUALITY_DATA else "model gate"
        raise CheckFailedError(
            f"{ctx.name} {ctx.session_date}: the {what} failed for the committed '{upstream}' output "
            f"(run {source.run_id}): " + "; ".join(meta.get("failures", [])),
            failures=meta.get("failures", []),
        )


def _table(ctx: StepContext) -> str:
    return ctx.pipeline.checks.anomaly.table


def _kept(ctx: StepContext) -> str:
    latest = ctx.store.latest(ctx.name)
    return (
        f"latest stays {latest['dt']} ({latest['model_version']})" if latest else "nothing is published yet"
    )


def _report(ctx: StepContext) -> str | None:
    """Write the run report (best effort); its location, or None."""
    if not ctx.pipeline.checks.report:
        return None
    try:
        from batch import report

        return report.write_report(ctx.pipeline, ctx.env, ctx.session_date)
    except Exception as e:
        import logging

        logging.getLogger(__name__).warning(
            "run report not written", extra={"error": f"{type(e).__name__}: {e}"}
        )
        return None


def _finish_gate(ctx: StepContext, gate: str, results: list) -> None:
    """Alert on warnings and failures; raise CheckFailedError when a `fail` check failed."""
    from batch.checks import anomaly

    failed = [r for r in results if r.status == "fail"]
    warned = [r for r in results if r.status == "warn"]
    if not failed and not warned:
        return
    lines = [("FAIL " if r.status == "fail" else "WARN ") + r.line() for r in failed + warned]
    stopped = bool(failed)
    kept = _kept(ctx) if stopped else None
    anomaly.deliver(
        ctx.env,
        anomaly.quality_message(
            pipeline=ctx.name,
            session_date=ctx.session_date.isoformat(),
            env=ctx.env.name,
            gate=gate,
            stopped=stopped,
            lines=lines,
            report=_report(ctx) if stopped else None,
            kept=kept,
        ),
    )
    if stopped:
        raise CheckFailedError(
            f"{gate} failed for {ctx.name} {ctx.session_date}: "
            + "; ".join(r.line() for r in failed)
            + f"; {kept}",
            failures=[r.line() for r in failed],
        )


def _write_gate(
    ctx: StepContext, dataset: str, name: str, results: list, source_run_id: str, info: dict
) -> None:
    failures = [r.line() for r in results if r.status == "fail"]
    doc = {
        "passed": not failures,
        "failures": failures,
        "source_run_id": source_run_id,
        "results": [r.to_dict() for r in results],
        **info,
    }
    with ctx.store.writer(ctx.name, dataset, ctx.session_date, run_id=ctx.run_id) as w:
        w.write_json(name, doc)
        w.metadata.update(
            {
                "run": ctx.run_record(),
                "passed": not failures,
                "failures": failures,
                "source_run_id": source_run_id,
            }
        )


def _gate_rows(results: list) -> list:
    return [("check_value", {"check": r.name}, r.value) for r in results if r.value is not None] + [
        ("check_failed", {"check": r.name}, float(r.status == "fail")) for r in results
    ]


def _after_aggregate(ctx: StepContext, result: dict) -> None:
    from datetime import timedelta

    from batch import metrics_store as ms
    from batch.checks import data

    cfg = ctx.pipeline.checks
    stats = result.get("stats") or {}
    window = cfg.data.volume.window_days
    hist = ms.safe_history(
        ctx.env,
        _table(ctx),
        ctx.name,
        since=ctx.session_date - timedelta(days=window),
        until=ctx.session_date - timedelta(days=1),
    )
    results = data.run_checks(
        stats, ctx.session_date, ctx.window.end, cfg.data, ms.series(hist, "aggregate", "events_session_day")
    )
    extra = data.check_metrics(stats, ctx.session_date, ctx.window.end)
    rows = ms.aggregate_rows(result) + [(k, None, v) for k, v in extra.items()] + _gate_rows(results)
    ms.safe_record(ctx.env, _table(ctx), ctx.name, ctx.session_date, "aggregate", rows)
    source = ctx.store.committed(ctx.name, "interactions", ctx.session_date, step="aggregate")
    _write_gate(ctx, QUALITY_DATA, "checks.json", results, source.run_id, {})
    _fail_on_anomalies(ctx, "aggregate")
    _finish_gate(ctx, "data checks", results)


def _after_train(ctx: StepContext, result: dict) -> None:
    import numpy as np

    import models
    from batch import metrics_store as ms
    from batch.checks import model_gate
    from batch.steps import aggregate as agg_step
    from batch.steps import train as train_step

    cfg = ctx.pipeline.checks
    src = ctx.store.committed(ctx.name, train_step.DATASET, ctx.session_date, step="train")
    with src.open("model.npz") as f:
        model = models.load_model(f)
    users = src.read_parquet("users.parquet").to_pandas()
    items = src.read_parquet("items.parquet").to_pandas()
    inter = (
        ctx.store.committed(ctx.name, agg_step.DATASET, ctx.session_date, step="aggregate")
        .read_parquet("interactions.parquet", columns=["user_idx", "item_idx", "weight"])
        .to_pandas()
    )
    seen = train_step.to_csr(inter, "weight", len(users), len(items))
    cand = model_gate.Candidate(
        model=model,
        metrics=result.get("metrics") or {},
        model_version=result.get("model_version", ""),
        user_ids=users["user_id"].to_numpy(),
        item_ids=items["item_id"].to_numpy(),
        seen=seen,
        unavailable=items.loc[~items["available"], "item_idx"].to_numpy(np.int32),
    )
    results, info = model_gate.run_gate(
        cand, ctx.store, ctx.name, ctx.session_date, cfg.model, seed=ctx.pipeline.model.seed
    )
    rows = ms.train_rows(result) + _gate_rows(results)
    ms.safe_record(ctx.env, _table(ctx), ctx.name, ctx.session_date, "train", rows)
    _write_gate(
        ctx, QUALITY_MODEL, "gate.json", results, src.run_id, {"model_version": cand.model_version, **info}
    )
    _fail_on_anomalies(ctx, "train")
    _finish_gate(ctx, "model gate", results)


def _export_extra(ctx: StepContext, result: dict) -> list:
    """Shard totals (recorded here: shards never write) and the catalogue coverage of the day's export, from the
    figures the export step computed (the export is not read again)."""
    from batch import metrics_store as ms
    from batch.summary import build_summary

    summary = build_summary(ctx.store, ctx.name, ctx.session_date, ctx.pipeline.candidates.shard_count)
    for step in ("candidates", "related"):
        if step in summary["steps"]:
            ms.safe_record(
                ctx.env, _table(ctx), ctx.name, ctx.session_date, step, ms.shard_rows(summary["steps"][step])
            )
    stats = result.get("stats") or {}
    model = ctx.store.committed(ctx.name, "model", ctx.session_date, step="train")
    available = model.read_parquet("items.parquet", columns=["available"]).column("available")
    n_available = int(pc.sum(available).as_py() or 0)
    distinct = stats.get("distinct_items", 0)
    # distinct items, top item share, personal share and the median score are in the stats (export_rows)
    return [("catalog_coverage", None, distinct / n_available if n_available else 0.0)]


def _after_export(ctx: StepContext, result: dict) -> None:
    from batch import metrics_store as ms
    from batch.checks import model_gate

    rows = ms.export_rows(result)
    try:
        rows += _export_extra(ctx, result)
    except Exception as e:
        import logging

        logging.getLogger(__name__).warning(
            "export metrics incomplete", extra={"error": f"{type(e).__name__}: {e}"}
        )
    ms.safe_record(ctx.env, _table(ctx), ctx.name, ctx.session_date, "export", rows)
    if result.get("published"):
        model = ctx.store.committed(ctx.name, "model", ctx.session_date, step="train")
        model_gate.promote(
            ctx.store,
            ctx.name,
            {
                "dt": ctx.session_date.isoformat(),
                "model_version": model.metadata.get("model_version"),
                "run_dir": model.run_dir,
                "metrics": model.metadata.get("metrics", {}),
                "model_type": model.metadata.get("model_type"),
                "params": model.metadata.get("params"),
                "run_id": ctx.run_id,
            },
        )
    location = _report(ctx)
    result["report"] = location
    _alert_anomalies(ctx, location)


def _anomalies(ctx: StepContext, step: str | None = None) -> list:
    from datetime import timedelta

    from batch import metrics_store as ms
    from batch.checks import anomaly

    cfg = ctx.pipeline.checks.anomaly
    if not cfg.enabled:
        return []
    days = max(cfg.window, 7 * cfg.weekday_weeks) + 7 * cfg.weekday_weeks + 7
    hist = ms.safe_history(
        ctx.env, cfg.table, ctx.name, since=ctx.session_date - timedelta(days=days), until=ctx.session_date
    )
    found = anomaly.scan(hist, ctx.session_date, cfg)
    return [a for a in found if step is None or a.metric.startswith(step + ".")]


def _fail_on_anomalies(ctx: StepContext, step: str) -> None:
    """With checks.anomaly.severity = fail, an anomaly in a step's own metrics stops the batch there."""
    if ctx.pipeline.checks.anomaly.severity == "fail":
        _alert_anomalies(ctx, step=step, failing=True)


def _alert_anomalies(
    ctx: StepContext, location: str | None = None, *, step: str | None = None, failing: bool = False
) -> None:
    """Send the anomalies found in the metric history to Slack; with ``failing``, stop the batch after."""
    from batch.checks import anomaly

    found = _anomalies(ctx, step)
    if not found:
        return
    if failing:
        location = _report(ctx)
    anomaly.deliver(
        ctx.env,
        anomaly.anomaly_message(
            pipeline=ctx.name,
            session_date=ctx.session_date.isoformat(),
            env=ctx.env.name,
            anomalies=found,
            report=location,
            failing=failing,
        ),
    )
    if failing:
        raise CheckFailedError(
            f"metric anomalies for {ctx.name} {ctx.session_date}: "
            + "; ".join(a.message for a in found)
            + f"; {_kept(ctx)}",
            failures=[a.message for a in found],
        )


def after_step(name: str, ctx: StepContext, result: dict) -> None:
    if name == "aggregate":
        _after_aggregate(ctx, result)
    elif name == "train":
        _after_train(ctx, result)
    elif name == "export":
        _after_export(ctx, result)


def on_check_failed(name: str, ctx: StepContext, error: CheckFailedError) -> None:
    """The export's publish check refused: alert with the reasons and the report (best effort)."""
    from batch import metrics_store as ms
    from batch.checks import anomaly

    if name != "export":
        return
    export = _committed_or_none(ctx, "export")
    check = (export.metadata.get("publish_check") if export else None) or {}
    rows = [(k, None, v) for k, v in (check.get("stats") or {}).items() if isinstance(v, (int, float))]
    rows.append(("check_failed", {"check": "publish"}, 1.0))
    ms.safe_record(ctx.env, _table(ctx), ctx.name, ctx.session_date, "export", rows)
    location = _report(ctx)
    anomaly.deliver(
        ctx.env,
        anomaly.quality_message(
            pipeline=ctx.name,
            session_date=ctx.session_date.isoformat(),
            env=ctx.env.name,
            gate="publish check",
            stopped=True,
            lines=["FAIL " + f for f in (error.failures or [str(error)])],
            report=location,
            kept=_kept(ctx),
        ),
    )
