"""publish: a staged export that passed its publish check -> the warehouse and the pointers consumers read.

The publish check is a gate on the export step (batch/checks/gates.py): when it failed, the graph refuses the
export to this step, so nothing is loaded and "latest" stays where it was. When it passed:

1. each exported file is loaded into its warehouse table, replacing partition ``dt`` in one operation (DuckDB
   transaction; BigQuery load job into ``table$YYYYMMDD`` with WRITE_TRUNCATE);
2. the publish record of the date is written and "latest" moves (forward only: a backfill never rewinds
   consumers);
3. the model behind the export is promoted (the promoted-model pointer, forward only), so tomorrow's model gate
   compares with it.
"""

from __future__ import annotations

import logging
import posixpath
import time

from batch import datasets
from batch.context import StepContext
from batch.datasets import EXPORT, MODEL
from batch.errors import ArtifactError
from batch.graph import step
from batch.storage import now_utc

log = logging.getLogger(__name__)

PUBLICATION = "publication"  # the dataset this step writes: the date's publish receipt (publish.json)


def summarize(meta: dict) -> dict:
    return {"publish": {k: meta.get(k) for k in ("tables", "latest_moved", "model_version")}}


@step(
    name="publish",
    reads=(EXPORT, MODEL),
    writes=PUBLICATION,
    summarize=summarize,
    description="checked export -> warehouse tables, latest, promoted model",
)
def run(ctx: StepContext) -> dict:
    cfg = ctx.pipeline
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
    files = {name: posixpath.join(export.run_dir, name) for name in export.metadata.get("tables", {})}
    loaded = {}
    timings: dict = {}
    if "warehouse" in cfg.export.destinations:
        t = time.perf_counter()
        with ctx.open_warehouse() as wh:
            for name, table in export.metadata["tables"].items():
                loaded[table] = wh.load_parquet(
                    table,
                    ctx.store.display(files[name]),
                    mode="replace_partition",
                    partition=ctx.session_date,
                )
        timings["warehouse_load_s"] = round(time.perf_counter() - t, 3)
    record = {
        "dt": ctx.session_date.isoformat(),
        "model_version": model_version,
        "run_dir": export.run_dir,
        "files": {name: ctx.store.display(path) for name, path in files.items()},
        "tables": loaded,
        "stats": export.metadata.get("stats", {}),
        "published_at": now_utc(),
        "run_id": ctx.run_id,
    }
    moved = ctx.store.publish(ctx.name, record)
    ctx.store.promote(ctx.name, model.promotion_record(ctx))
    timings["total_s"] = round(time.perf_counter() - started, 3)
    with ctx.store.writer(ctx.name, PUBLICATION, ctx.session_date, run_id=ctx.run_id) as w:
        w.write_json("publish.json", record)
        w.metadata.update(
            {
                "run": ctx.run_record(),
                "model_version": model_version,
                "tables": loaded,
                "latest_moved": moved,
                "timings": timings,
            }
        )
    log.info(
        "published",
        extra={
            "pipeline": ctx.name,
            "dt": str(ctx.session_date),
            "latest_moved": moved,
            "tables": list(loaded),
        },
    )
    return {"published": True, "latest_moved": moved, "tables": loaded, "timings": timings}
