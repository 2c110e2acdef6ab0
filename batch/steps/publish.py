"""publish: a staged export that passed its publish check -> what consumers read, in one commit point.

The publish check is a gate on the export step (batch/checks/gates.py): when it failed, the graph refuses the
export to this step, so nothing is loaded and what is in service stays. When it passed, batch.serving.publish:

1. loads each exported file into its warehouse table, replacing partition ``dt`` (DuckDB transaction; BigQuery
   load job into ``table$YYYYMMDD`` with WRITE_TRUNCATE), and re-points the serving view ``<table>_serving``;
2. keeps the date's publish record and the model's promotion record (what a rollback restores);
3. writes the serving record (``published/SERVING.json``): publish, promoted model and warehouse state moved
   together, forward only in time (a backfill never rewinds consumers) and not while a rollback pinned the
   publish in service (the run is recorded in the ledger as "held by pin");
4. records the publish in the ledger.

Records hold paths relative to the artifact root, and the checksums of the files they name, so the state can
move (RECO_HOME, a bucket copy) and a rollback can check its target whole.
"""

from __future__ import annotations

import logging
import posixpath
import time

from batch import datasets, serving
from batch.context import StepContext
from batch.datasets import EXPORT, MODEL
from batch.errors import ArtifactError
from batch.graph import step
from batch.storage import now_utc

log = logging.getLogger(__name__)

PUBLICATION = "publication"  # the dataset this step writes: the date's publish receipt (publish.json)


def summarize(meta: dict) -> dict:
    return {"publish": {k: meta.get(k) for k in ("tables", "latest_moved", "model_version", "held_by_pin")}}


@step(
    name="publish",
    reads=(EXPORT, MODEL),
    writes=PUBLICATION,
    summarize=summarize,
    description="checked export -> warehouse tables and serving view, serving record, ledger",
)
def run(ctx: StepContext) -> dict:
    cfg = ctx.pipeline
    store = ctx.store
    started = time.perf_counter()
    export = datasets.committed(ctx, EXPORT)
    model = datasets.model(ctx)
    model_version = export.metadata["model_version"]
    if model.version != model_version:
        raise ArtifactError(
            f"the export was made from model {model_version}, but the committed model is {model.version}",
            path=export.url,
            step="export",
            rerun=datasets.rerun_command(ctx, "export"),
        )
    tables = export.metadata.get("tables", {})
    run_dir = store.relative(export.run_dir)
    record = {
        "dt": ctx.session_date.isoformat(),
        "model_version": model_version,
        "run_dir": run_dir,
        "files": {name: posixpath.join(run_dir, name) for name in tables},
        "checksums": {
            name: export.marker["files"][name] for name in tables if name in export.marker["files"]
        },
        "targets": tables if "warehouse" in cfg.export.destinations else {},
        "tables": {},
        "stats": export.metadata.get("stats", {}),
        "published_at": now_utc(),
        "run_id": ctx.run_id,
        "export_run_id": export.run_id,
    }
    model_record = {
        **model.promotion_record(ctx),
        "run_dir": store.relative(model.src.run_dir),
        "checksums": model.src.marker.get("files", {}),
        "promoted_at": now_utc(),
    }
    t = time.perf_counter()
    outcome = serving.publish(store, ctx.env, cfg, record, model_record, figures=record["stats"])
    timings = {
        "publish_s": round(time.perf_counter() - t, 3),
        "total_s": round(time.perf_counter() - started, 3),
    }
    with store.writer(ctx.name, PUBLICATION, ctx.session_date, run_id=ctx.run_id) as w:
        w.write_json("publish.json", record | {"tables": outcome.tables})
        w.metadata.update(
            {
                "run": ctx.run_record(),
                "model_version": model_version,
                "tables": outcome.tables,
                "latest_moved": outcome.moved,
                "held_by_pin": outcome.held_by_pin,
                "ledger_entry": outcome.entry["id"],
                "timings": timings,
            }
        )
    log.info(
        "published" if outcome.moved else "recorded, not put in service",
        extra={
            "pipeline": ctx.name,
            "dt": str(ctx.session_date),
            "latest_moved": outcome.moved,
            "held_by_pin": outcome.held_by_pin,
            "tables": list(outcome.tables),
        },
    )
    return {
        "published": True,
        "latest_moved": outcome.moved,
        "held_by_pin": outcome.held_by_pin,
        "tables": outcome.tables,
        "timings": timings,
    }
