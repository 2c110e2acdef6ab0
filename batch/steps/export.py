"""export: candidate shards -> one recommendations table per pipeline and date, published only if it passes.

1. Every shard of the session date must be committed and made from the same model (else: which shard to rerun).
2. The shards are combined into ``recommendations.parquet`` (user_id, item_id, rank, score, source,
   model_version, dt), and ``related.parquet`` when the pipeline has the related frame, in the ``export``
   partition of the date: staged, always kept for inspection.
3. The publish check (batch/checks/publish.py) runs over the staged files against the previous publish.
4. Pass: the warehouse partition ``dt`` of the export table is replaced in one operation (DuckDB transaction;
   BigQuery load job into ``table$YYYYMMDD`` with WRITE_TRUNCATE) and "latest" moves (forward only).
   Fail: nothing is loaded, latest stays where it was, and the step raises with the reasons.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time

import duckdb

from batch.checks import publish as publish_check
from batch.context import StepContext
from batch.errors import ArtifactError, CheckFailedError
from batch.steps import candidates, train
from batch.storage import now_utc
from batch.warehouse.duckdb import register_fsspec

log = logging.getLogger(__name__)

DATASET = "export"


def related_table(table: str) -> str:
    return f"{table}_related"


def shard_parts(ctx: StepContext, dataset: str, step: str, model_version: str) -> list[str]:
    """URLs of every shard's part file; errors name the shard and how to rerun it."""
    count = ctx.pipeline.candidates.shard_count
    urls = []
    for index in range(count):
        rerun = (
            f"reco step {step} --pipeline {ctx.name} --date {ctx.session_date} --env {ctx.env.name} "
            f"--shard-index {index} --shard-count {count}"
        )
        part = ctx.store.committed(
            ctx.name, dataset, ctx.session_date, step=step, shard=(index, count), rerun=rerun
        )
        made_from = part.metadata.get("model_version")
        if made_from != model_version:
            raise ArtifactError(
                f"shard {index} of {count} was made from model {made_from}, but the committed model is "
                f"{model_version}",
                path=part.url,
                step=step,
                rerun=rerun,
            )
        urls.append(ctx.store.display(part.path("part.parquet")))
    return urls


def _combine(
    con: duckdb.DuckDBPyConnection, parts: list[str], columns: str, out_path: str, model_version: str, dt
) -> None:
    con.execute(
        f"COPY (SELECT {columns}, $model_version AS model_version, CAST($dt AS DATE) AS dt "
        f"FROM read_parquet($parts)) TO '{out_path}' (FORMAT parquet, COMPRESSION zstd)",
        {"model_version": model_version, "dt": dt, "parts": parts},
    )


def run(ctx: StepContext) -> dict:
    cfg = ctx.pipeline
    started = time.perf_counter()
    model_src = ctx.store.committed(ctx.name, train.DATASET, ctx.session_date, step="train")
    model_version = model_src.metadata["model_version"]
    expected_users = model_src.read_parquet("users.parquet", columns=["user_idx"]).num_rows
    parts = shard_parts(ctx, candidates.DATASET, "candidates", model_version)
    with_related = "related" in cfg.candidates.sources
    related_parts = (
        shard_parts(ctx, candidates.RELATED_DATASET, "related", model_version) if with_related else []
    )

    con = duckdb.connect()
    register_fsspec(con, parts[0])
    previous = ctx.store.previous_publish(ctx.name, ctx.session_date)
    with (
        ctx.store.writer(ctx.name, DATASET, ctx.session_date, run_id=ctx.run_id) as w,
        tempfile.TemporaryDirectory() as tmp,
    ):
        outputs = {"recommendations.parquet": (parts, "user_id, item_id, rank, score, source")}
        if with_related:
            outputs["related.parquet"] = (related_parts, "item_id, related_item_id, rank, score")
        for name, (urls, columns) in outputs.items():
            local = os.path.join(tmp, name)
            _combine(con, urls, columns, local, model_version, ctx.session_date)
            with open(local, "rb") as src, w.open(name) as dst:
                while chunk := src.read(1 << 22):
                    dst.write(chunk)
        stats = publish_check.export_stats(con, [os.path.join(tmp, "recommendations.parquet")])
        failures = publish_check.evaluate(stats, expected_users, previous, cfg.checks.publish)
        check = {
            "passed": not failures,
            "failures": failures,
            "stats": stats,
            "previous": previous and {"dt": previous["dt"], "stats": previous.get("stats")},
        }
        w.write_json("publish_check.json", check)
        w.metadata.update({"run": ctx.run_record(), "model_version": model_version, "publish_check": check})
        run_dir = w.run_dir
    con.close()

    if failures:
        latest = ctx.store.latest(ctx.name)
        kept = (
            f"latest stays {latest['dt']} ({latest['model_version']})"
            if latest
            else "nothing is published yet"
        )
        raise CheckFailedError(
            f"publish check failed for {ctx.name} {ctx.session_date}: " + "; ".join(failures) + f"; {kept}",
            failures=failures,
        )

    loaded = {}
    if "warehouse" in cfg.export.destinations:
        with ctx.open_warehouse() as wh:
            for name, table in (
                ("recommendations.parquet", cfg.export.table),
                ("related.parquet", related_table(cfg.export.table)),
            ):
                if name in outputs:
                    url = ctx.store.display(f"{run_dir}/{name}")
                    loaded[table] = wh.load_parquet(
                        table, url, mode="replace_partition", partition=ctx.session_date
                    )
    record = {
        "dt": ctx.session_date.isoformat(),
        "model_version": model_version,
        "run_dir": run_dir,
        "files": {name: ctx.store.display(f"{run_dir}/{name}") for name in outputs},
        "tables": loaded,
        "stats": stats,
        "published_at": now_utc(),
        "run_id": ctx.run_id,
    }
    moved = ctx.store.publish(ctx.name, record)
    timings = {"total_s": round(time.perf_counter() - started, 3)}
    log.info(
        "export published",
        extra={
            "pipeline": ctx.name,
            "dt": str(ctx.session_date),
            "rows": stats["rows"],
            "latest_moved": moved,
        },
    )
    return {"published": True, "latest_moved": moved, "stats": stats, "tables": loaded, "timings": timings}
