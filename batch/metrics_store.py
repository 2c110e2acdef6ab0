"""The metric store: every step's numbers in long form, in a warehouse table, for history, anomalies and reports.

Schema (Terraform creates ``reco_metrics.run_metrics`` in BigQuery, partitioned by dt; DuckDB gets ``run_metrics``
in the local warehouse file on first write)::

    pipeline STRING, dt DATE, step STRING, metric STRING, dimensions STRING (JSON object, "{}" when none),
    value FLOAT64, recorded_at TIMESTAMP

Re-running a date never double-counts, by **dedupe on read**: one recording of a step writes all its rows with
one ``recorded_at``; readers keep, per (pipeline, dt, step), only the rows of the latest ``recorded_at``
(``QUALIFY``). After appending, the writer also deletes that group's older rows (best effort; a failed cleanup
leaves rows that readers ignore). Append + dedupe works the same on both warehouses (a BigQuery load job cannot
share a transaction with a DELETE) and never leaves a window with no rows.

Only non-sharded steps write (DuckDB allows one writer process per file, and the local runner runs shards as
concurrent processes): the export step records the candidate and related shards' totals under their own step
names. Opening the DuckDB file is retried briefly while another process holds its lock. Recording never fails
the batch: an unreachable store is a warning in the log.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from contextlib import contextmanager
from datetime import UTC, date, datetime

import pandas as pd
import pyarrow as pa

from batch.warehouse import open_warehouse

log = logging.getLogger(__name__)

SCHEMA = pa.schema(
    [
        ("pipeline", pa.string()),
        ("dt", pa.date32()),
        ("step", pa.string()),
        ("metric", pa.string()),
        ("dimensions", pa.string()),
        ("value", pa.float64()),
        ("recorded_at", pa.timestamp("us", tz="UTC")),
    ]
)

LOCK_RETRY_S = 30.0

HISTORY_SQL = """
SELECT pipeline, dt, step, metric, dimensions, value, recorded_at
FROM {metrics_table}
WHERE pipeline = @pipeline AND dt >= @since AND dt <= @until
QUALIFY recorded_at = MAX(recorded_at) OVER (PARTITION BY pipeline, dt, step)
"""

CLEANUP_SQL = """
DELETE FROM {metrics_table}
WHERE pipeline = @pipeline AND dt = @dt AND step = @step AND recorded_at < @recorded_at
"""


@contextmanager
def open_store(env, *, retry_s: float = LOCK_RETRY_S):
    """The environment's warehouse, retrying while another process holds the DuckDB file's lock."""
    wh = open_warehouse(env, lock_timeout_s=retry_s)  # DuckDB waits for the file lock itself
    try:
        yield wh
    finally:
        wh.close()


def dims(d: dict | None) -> str:
    return json.dumps(d or {}, sort_keys=True, separators=(",", ":"))


def rows_table(
    pipeline: str, dt: date, step: str, rows: Iterable[tuple[str, dict | None, float]], recorded_at: datetime
) -> pa.Table:
    out = {k: [] for k in SCHEMA.names}
    for metric, dimensions, value in rows:
        if value is None:
            continue
        value = float(value)
        if not math.isfinite(value):
            continue
        out["pipeline"].append(pipeline)
        out["dt"].append(dt)
        out["step"].append(step)
        out["metric"].append(metric)
        out["dimensions"].append(dims(dimensions))
        out["value"].append(value)
        out["recorded_at"].append(recorded_at)
    return pa.table(out, schema=SCHEMA)


def record(
    env,
    table: str,
    pipeline: str,
    dt: date,
    step: str,
    rows: Iterable[tuple[str, dict | None, float]],
    *,
    recorded_at: datetime | None = None,
) -> int:
    """Append one step's metrics for one date (replacing, for readers, what an earlier run of it recorded)."""
    recorded_at = recorded_at or datetime.now(UTC)
    data = rows_table(pipeline, dt, step, rows, recorded_at)
    if data.num_rows == 0:
        return 0
    with open_store(env) as wh:
        n = wh.write_table(table, data, mode="append")
        try:
            wh.query(
                CLEANUP_SQL,
                {"pipeline": pipeline, "dt": dt, "step": step, "recorded_at": recorded_at},
                tables={"metrics_table": table},
            )
        except Exception as e:  # readers dedupe anyway
            log.warning("metric store cleanup failed; readers ignore the older rows", extra={"error": str(e)})
    return n


def safe_record(env, table: str, pipeline: str, dt: date, step: str, rows) -> int:
    """``record`` that logs instead of raising: the metric store must never fail a batch."""
    try:
        return record(env, table, pipeline, dt, step, list(rows))
    except Exception as e:
        log.warning(
            "could not record metrics",
            extra={"pipeline": pipeline, "dt": str(dt), "step": step, "error": f"{type(e).__name__}: {e}"},
        )
        return 0


def history(env, table: str, pipeline: str, *, since: date, until: date) -> pd.DataFrame:
    """Deduplicated rows of one pipeline between two dates (inclusive); empty when the table does not exist."""
    cols = SCHEMA.names
    with open_store(env) as wh:
        if not wh.table_exists(table):
            return pd.DataFrame(columns=cols)
        df = wh.query(
            HISTORY_SQL,
            {"pipeline": pipeline, "since": since, "until": until},
            tables={"metrics_table": table},
        ).to_pandas()
    if df.empty:
        return pd.DataFrame(columns=cols)
    df["dt"] = pd.to_datetime(df["dt"]).dt.date
    return df.sort_values(["dt", "step", "metric"], ignore_index=True)


def series(df: pd.DataFrame, step: str, metric: str, dimensions: dict | None = None) -> dict[str, float]:
    """{dt ISO: value} of one metric (one dimensions value) from a ``history`` frame."""
    if df.empty:
        return {}
    sel = df[(df["step"] == step) & (df["metric"] == metric) & (df["dimensions"] == dims(dimensions))]
    return {d.isoformat(): float(v) for d, v in zip(sel["dt"], sel["value"], strict=True)}


def safe_history(env, table: str, pipeline: str, *, since: date, until: date) -> pd.DataFrame:
    try:
        return history(env, table, pipeline, since=since, until=until)
    except Exception as e:
        log.warning(
            "metric history unavailable", extra={"pipeline": pipeline, "error": f"{type(e).__name__}: {e}"}
        )
        return pd.DataFrame(columns=SCHEMA.names)


# -- what each step's result becomes ---------------------------------------------------------------------------


def numbers(d: dict, prefix: str = "") -> Iterable[tuple[str, float]]:
    for k, v in (d or {}).items():
        if isinstance(v, bool):
            yield prefix + k, float(v)
        elif isinstance(v, (int, float)):
            yield prefix + k, float(v)


def timing_rows(timings: dict | None) -> list[tuple[str, dict | None, float]]:
    return [("timing_s", {"phase": phase}, s) for phase, s in numbers(timings or {})]


def result_rows(result: dict) -> list[tuple[str, dict | None, float]]:
    """The default rows of a step's result: its numeric counts and stats, and its timings by phase."""
    rows: list = [(k, None, v) for k, v in numbers(result.get("counts") or {})]
    rows += [(k, None, v) for k, v in numbers(result.get("stats") or {})]
    return rows + timing_rows(result.get("timings"))


def shard_rows(summary_entry: dict) -> list[tuple[str, dict | None, float]]:
    """A sharded step's totals over its shards."""
    rows: list = [(k, None, v) for k, v in numbers(summary_entry.get("counts") or {})]
    rows.append(("shards_committed", None, summary_entry.get("shards_committed")))
    for k, v in numbers(summary_entry.get("timings") or {}):
        rows.append(("timing_s", {"phase": k}, v))
    return rows
