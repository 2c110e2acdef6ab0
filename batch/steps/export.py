"""export: the candidate sources' shards -> one staged export per pipeline and date, with its figures.

1. Every shard of every enabled candidate source must be committed and made from the same model (else: which
   shard to rerun).
2. Each source's shards are combined into the file it declares (``recommendations.parquet``: user_id, item_id,
   rank, score, source; ``related.parquet``: item_id, related_item_id, rank, score; plus model_version and dt) in
   the ``export`` partition of the date: staged, always kept for inspection.
3. The figures of the export (rows, users, duplicates, rank gaps, distinct items, coverage...) are computed in
   the same DuckDB session and committed with it; the publish check (a gate on this step) judges them, and the
   publish step loads and points at the export only when it passed.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time

import duckdb
import pyarrow.compute as pc

from batch import datasets
from batch.context import StepContext
from batch.datasets import EXPORT, MODEL
from batch.graph import GRAPH, step
from batch.warehouse.duckdb import register_fsspec

log = logging.getLogger(__name__)

PRIMARY = "recommendations.parquet"  # the file the figures describe: what consumers of the frame read

# Three passes over the export (per user, per item, overall), each a DuckDB scan of the Parquet files: memory
# stays bounded whatever the row count. Besides the publish check's own figures it yields the ones the metric
# store keeps (distinct items, top item share, personal share, median personal score), so nothing reads the
# export again.
STATS_SQL = """
WITH t AS (SELECT user_id, item_id, rank, score, source FROM read_parquet($files)),
per_user AS (
  SELECT user_id, COUNT(*) AS n, MIN(rank) AS lo, MAX(rank) AS hi, COUNT(DISTINCT rank) AS ranks,
         COUNT(DISTINCT item_id) AS items, COUNT(item_id) AS with_item
  FROM t GROUP BY user_id),
per_item AS (SELECT item_id, COUNT(*) AS c FROM t WHERE item_id IS NOT NULL GROUP BY item_id),
overall AS (
  SELECT COUNT(*) AS rows, COUNT(*) FILTER (WHERE user_id IS NULL OR item_id IS NULL) AS null_ids,
         AVG(CASE WHEN source = 'personal' THEN 1.0 ELSE 0.0 END) AS personal_share,
         MEDIAN(score) FILTER (WHERE source = 'personal') AS score_median_personal
  FROM t)
SELECT
  overall.rows,
  (SELECT COUNT(user_id) FROM per_user) AS users,
  (SELECT COALESCE(SUM(with_item - items), 0) FROM per_user WHERE user_id IS NOT NULL) AS duplicate_pairs,
  (SELECT COUNT(*) FROM per_user WHERE user_id IS NOT NULL AND (lo <> 1 OR hi <> n OR ranks <> n)) AS users_bad_ranks,
  overall.null_ids,
  (SELECT COUNT(*) FROM per_item) AS distinct_items,
  (SELECT COALESCE(MAX(c), 0) FROM per_item) AS top_item_rows,
  overall.personal_share,
  overall.score_median_personal
FROM overall
"""
COUNTS = (
    "rows",
    "users",
    "duplicate_pairs",
    "users_bad_ranks",
    "null_ids",
    "distinct_items",
    "top_item_rows",
)


def export_stats(con, files: list[str]) -> dict:
    """The figures of an export, computed by DuckDB over its Parquet files.

    ``duplicate_pairs`` counts the rows beyond the first of each (user, item).
    """
    cursor = con.execute(STATS_SQL, {"files": files})
    names = [d[0] for d in cursor.description]
    row = dict(zip(names, cursor.fetchone(), strict=True))
    out = {k: int(row[k] or 0) for k in COUNTS}
    out["top_item_share"] = out["top_item_rows"] / out["rows"] if out["rows"] else 0.0
    out["personal_share"] = float(row["personal_share"] or 0.0)
    median = row["score_median_personal"]
    out["score_median_personal"] = None if median is None else float(median)
    return out


def _combine(
    con: duckdb.DuckDBPyConnection, parts: list[str], columns: str, out_path: str, model_version: str, dt
) -> None:
    con.execute(
        f"COPY (SELECT {columns}, $model_version AS model_version, CAST($dt AS DATE) AS dt "
        f"FROM read_parquet($parts)) TO '{out_path}' (FORMAT parquet, COMPRESSION zstd)",
        {"model_version": model_version, "dt": dt, "parts": parts},
    )


def summarize(meta: dict) -> dict:
    return {"export": {"stats": meta.get("stats", {}), "tables": meta.get("tables", {})}}


@step(
    name="export",
    reads=(MODEL,),
    reads_sources=True,
    writes=EXPORT,
    summarize=summarize,
    description="shards -> staged export and its figures",
)
def run(ctx: StepContext) -> dict:
    cfg = ctx.pipeline
    started = time.perf_counter()
    model = datasets.model(ctx)
    model_version = model.version
    expected_users = model.user_count()
    available = model.src.read_parquet("items.parquet", columns=["available"]).column("available")
    n_available = int(pc.sum(available).as_py() or 0)
    outputs = {}
    for producer, export in GRAPH.exports(cfg):
        parts = datasets.shards(ctx, producer.writes, model_version)
        urls = [ctx.store.display(p.path("part.parquet")) for p in parts]
        outputs[export.file] = (urls, ", ".join(export.columns), cfg.export.table + export.table_suffix)
    if PRIMARY not in outputs:
        raise ValueError(f"pipeline {cfg.name}: no enabled candidate source exports {PRIMARY}")

    con = duckdb.connect()
    register_fsspec(con, outputs[PRIMARY][0][0])
    timings: dict = {}
    with (
        ctx.store.writer(ctx.name, EXPORT, ctx.session_date, run_id=ctx.run_id) as w,
        tempfile.TemporaryDirectory() as tmp,
    ):
        t = time.perf_counter()
        for name, (urls, columns, _table) in outputs.items():
            local = os.path.join(tmp, name)
            _combine(con, urls, columns, local, model_version, ctx.session_date)
            with open(local, "rb") as src, w.open(name) as dst:
                while chunk := src.read(1 << 22):
                    dst.write(chunk)
        timings["write_s"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        stats = export_stats(con, [os.path.join(tmp, PRIMARY)])
        stats["expected_users"] = expected_users
        stats["user_coverage"] = round(stats["users"] / expected_users, 6) if expected_users else 0.0
        stats["catalog_coverage"] = stats["distinct_items"] / n_available if n_available else 0.0
        timings["stats_s"] = round(time.perf_counter() - t, 3)
        timings["total_s"] = round(time.perf_counter() - started, 3)
        tables = {name: table for name, (_urls, _cols, table) in outputs.items()}
        w.metadata.update(
            {
                "run": ctx.run_record(),
                "model_version": model_version,
                "stats": stats,
                "tables": tables,
                "timings": timings,
            }
        )
    con.close()
    log.info(
        "export staged",
        extra={
            "pipeline": ctx.name,
            "dt": str(ctx.session_date),
            "rows": stats["rows"],
            "users": stats["users"],
        },
    )
    return {"model_version": model_version, "stats": stats, "tables": tables, "timings": timings}
