"""Daily partial aggregates: the aggregate step's window built from one committed partial per event day.

Each event day (in the pipeline's timezone) has a partition of dataset ``interactions_daily`` (``dt=<day>``,
committed like every other output): ``partial.parquet`` (user_id, item_id, weight, n_events of that day's valid
events) and, in its commit marker, what it was made from: the fingerprint of the SQL, event weights, timezone
and source table; the day's census; the day's per-status row counts (what the data stats need); whether the day
was over when it was made.

The census of a day is, where the warehouse keeps it, the metadata of the events table's UTC day partitions that
overlap the day (rows and last modification: BigQuery ``INFORMATION_SCHEMA.PARTITIONS``, no event bytes read),
else a scan of the ts column (row count and timestamp checksum, ``aggregate_day_census.sql``). A run reuses a
day's partial when its fingerprint and census still match and the day was over; every other day (new, restated
by late events, made by other SQL or weights, or still in progress) is recomputed with
``aggregate_daily_partials.sql`` over runs of consecutive days: one scan gives the partials and the day's stats.
The window's interactions are the sums of the partials (the holdout split falls on day boundaries), computed by
DuckDB over the partials' Arrow tables, equal to a full scan's (tests/incremental/test_partials.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from batch import datasets
from batch.context import StepContext
from batch.datasets import INTERACTIONS_DAILY
from batch.storage import Committed
from batch.warehouse.base import Warehouse, load_sql
from batch.warehouse.duckdb import to_arrow

log = logging.getLogger(__name__)

PARTIAL_FILE = "partial.parquet"
PARTIAL_SCHEMA = pa.schema(
    [("user_id", pa.string()), ("item_id", pa.string()), ("weight", pa.float64()), ("n_events", pa.int64())]
)
CENSUS_SQL = "aggregate_day_census"
PARTIALS_SQL = "aggregate_daily_partials"
EVENTS_TS_COLUMN = "ts"  # the events table's timestamp (batch/sql/clean_events.sql)
CENSUS_METADATA = "partition metadata"
CENSUS_TS_SCAN = "ts scan"
# the window's sum of its days' partials; ``in_holdout`` and ``run_rank`` are added to each day's rows
WINDOW_SUM_SQL = """
SELECT user_id, item_id,
       SUM(weight) AS weight,
       SUM(CASE WHEN in_holdout THEN 0.0 ELSE weight END) AS weight_train,
       CAST(SUM(CASE WHEN in_holdout THEN n_events ELSE 0 END) AS BIGINT) AS holdout_events
FROM window_partials
GROUP BY user_id, item_id
"""
# the latest run that computed a day of each user's: runs ranked by id, the largest rank per user
USER_CHANGES_SQL = """
SELECT user_id, MAX(run_rank) AS run_rank FROM window_partials GROUP BY user_id
"""


def fingerprint(ctx: StepContext) -> str:
    """What a partial depends on: a partial made under another fingerprint is never reused."""
    cfg = ctx.pipeline
    blob = json.dumps(
        {
            "sql": [load_sql(CENSUS_SQL), load_sql(PARTIALS_SQL)],
            "event_weights": sorted(cfg.aggregate.event_weights.items()),
            "timezone": cfg.source.timezone,
            "events_table": cfg.source.events_table,
        },
        sort_keys=True,
    ).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def day_start(d: date, timezone: str) -> datetime:
    return datetime.combine(d, time.min, tzinfo=ZoneInfo(timezone)).astimezone(UTC)


def utc_days(d: date, timezone: str) -> list[date]:
    """The UTC days (day partitions) that hours of day ``d`` in ``timezone`` fall on: 1 or 2."""
    first = day_start(d, timezone).date()
    last = (day_start(d + timedelta(days=1), timezone) - timedelta(microseconds=1)).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def consecutive_runs(days: list[date]) -> list[tuple[date, date]]:
    """[(first, last)] of the runs of consecutive days in a sorted list."""
    runs: list[tuple[date, date]] = []
    for d in days:
        if runs and runs[-1][1] + timedelta(days=1) == d:
            runs[-1] = (runs[-1][0], d)
        else:
            runs.append((d, d))
    return runs


def _as_date(value) -> date | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return pd.Timestamp(value).date()


@dataclass
class Window:
    """The window as the full scan would give it, plus what the partials saved."""

    pairs: pa.Table  # aggregate.PAIR_COLUMNS
    stats_rows: pd.DataFrame  # status, day, n_rows, max_ts (as aggregate_stats.sql returns them)
    user_changes: pd.DataFrame  # user_id, changed_run: the latest run that (re)computed a day of the user's
    info: dict = field(default_factory=dict)


@dataclass
class Census:
    """Each window day's census (compared with the one recorded with its partial) and what it counted."""

    kind: str  # CENSUS_METADATA | CENSUS_TS_SCAN
    days: dict[date, dict]
    rows: int  # events the census counted (metadata: the rows of the overlapping partitions)

    def of(self, d: date) -> dict:
        if self.kind == CENSUS_TS_SCAN:
            return self.days.get(d, {"n_rows": 0, "ts_checksum": 0})
        return self.days[d]


def _census(wh: Warehouse, ctx: StepContext, days: list[date], tables: dict) -> Census:
    """From the events table's partition metadata when the warehouse has it, else from a scan of ts."""
    tz = ctx.pipeline.source.timezone
    events = tables["events_table"]
    if isinstance(events, str):  # a pipeline's own SELECT (events_sql) has no partitions of its own
        per_utc = {d: utc_days(d, tz) for d in days}
        first, last = per_utc[days[0]][0], per_utc[days[-1]][-1]
        meta = wh.partition_census(events, first, last, ts_column=EVENTS_TS_COLUMN)
        if meta is not None:

            def entry(u: date) -> list:
                rows, modified = meta.get(u, (0, None))
                return [u.isoformat(), int(rows), None if modified is None else modified.isoformat()]

            # the kind is part of the dict: a census of the other kind never compares equal (reuse_verdict)
            out = {d: {"kind": CENSUS_METADATA, "partitions": [entry(u) for u in per_utc[d]]} for d in days}
            rows = sum(int(meta.get(u, (0, None))[0]) for u in {u for v in per_utc.values() for u in v})
            return Census(CENSUS_METADATA, out, rows)
    w = ctx.window
    scanned = wh.query_file(
        CENSUS_SQL, {"window_start": w.start, "window_end": w.end, "timezone": tz}, tables=tables
    ).to_pylist()
    out = {
        _as_date(r["day"]): {"n_rows": int(r["n_rows"]), "ts_checksum": int(r["ts_checksum"] or 0)}
        for r in scanned
    }
    return Census(CENSUS_TS_SCAN, out, sum(c["n_rows"] for c in out.values()))


def _stats_records(rows: pd.DataFrame) -> list[dict]:
    return [
        {
            "status": r.status,
            "n_rows": int(r.n_rows),
            "max_ts": None if pd.isna(r.max_ts) else pd.Timestamp(r.max_ts).isoformat(),
        }
        for r in rows.itertuples()
    ]


def _stats_frame(day: date, records: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "status": [r["status"] for r in records],
            "day": [day] * len(records),
            "n_rows": np.array([r["n_rows"] for r in records], dtype=np.int64),
            "max_ts": pd.to_datetime([r["max_ts"] for r in records], utc=True),
        }
    )


def split_scan(scan: pa.Table) -> tuple[pa.Table, pd.DataFrame]:
    """aggregate_daily_partials.sql's rows -> (valid rows: day, user_id, item_id, weight, n_events; stats rows:
    status, day, n_rows, max_ts, as aggregate_stats.sql gives them)."""
    stats = (
        scan.group_by(["status", "day"], use_threads=False)
        .aggregate([("n_rows", "sum"), ("max_ts", "max")])
        .rename_columns(["status", "day", "n_rows", "max_ts"])
        .to_pandas()
    )
    stats["day"] = stats["day"].map(_as_date)
    stats["n_rows"] = stats["n_rows"].astype(np.int64)
    valid = scan.filter(pc.equal(scan["status"], "valid"))
    valid = pa.table(
        {
            "day": valid["day"],
            "user_id": valid["user_id"],
            "item_id": valid["item_id"],
            "weight": valid["weight"].cast(pa.float64()),
            "n_events": valid["n_rows"].cast(pa.int64()),
        }
    )
    return valid, stats[["status", "day", "n_rows", "max_ts"]]


def reuse_verdict(marker_meta: dict | None, fp: str, census: dict) -> str | None:
    """None when a stored partial can be reused, else why the day is (re)computed."""
    if marker_meta is None:
        return "new"
    if marker_meta.get("fingerprint") != fp:
        return "aggregate SQL, event weights or timezone changed"
    if not marker_meta.get("complete"):
        return "the day was not over when its partial was made"
    stored = marker_meta.get("census") or {}
    if stored.get("kind", CENSUS_TS_SCAN) != census.get("kind", CENSUS_TS_SCAN):
        return (
            f"the census changed kind ({stored.get('kind', CENSUS_TS_SCAN)} -> "
            f"{census.get('kind', CENSUS_TS_SCAN)}): the partial cannot be checked against it"
        )
    if stored != census:
        return "restated: the day's events changed since its partial was made"
    return None


def sum_partials(parts: list[tuple[pa.Table, bool, str]]) -> tuple[pa.Table, pd.DataFrame]:
    """The window's pairs (aggregate.PAIR_COLUMNS) and user changes from (partial, in holdout, run id) per day.

    DuckDB groups the days' Arrow tables in place (no copy, no Python string per row): several times faster than
    pyarrow's group_by over their concatenation at 10M events."""

    def day_rows(t: pa.Table, in_holdout: bool, run_rank: int) -> pa.Table:
        n = t.num_rows
        return (
            t.select(PARTIAL_SCHEMA.names)
            .cast(PARTIAL_SCHEMA)
            .append_column("in_holdout", pa.array(np.full(n, in_holdout), pa.bool_()))
            .append_column("run_rank", pa.array(np.full(n, run_rank, np.int32), pa.int32()))
        )

    runs = sorted({run for _, _, run in parts})
    rank = {run: i for i, run in enumerate(runs)}
    # the empty first piece types the columns even when no day has a valid event
    pieces = [day_rows(PARTIAL_SCHEMA.empty_table(), False, 0)]
    pieces += [day_rows(t, in_holdout, rank[run]) for t, in_holdout, run in parts]
    window_partials = pa.concat_tables(pieces)
    con = duckdb.connect()
    try:
        con.register("window_partials", window_partials)
        pairs = to_arrow(con.sql(WINDOW_SUM_SQL))
        latest = to_arrow(con.sql(USER_CHANGES_SQL))
    finally:
        con.close()
    changes = pd.DataFrame(
        {
            "user_id": latest["user_id"].to_numpy(zero_copy_only=False),
            "changed_run": np.asarray(runs, dtype=object)[latest["run_rank"].to_numpy()],
        }
    )
    return pairs, changes


def build_window(ctx: StepContext, wh: Warehouse, base_params: dict, tables: dict) -> Window:
    """Reuse or recompute each day's partial, then sum the window's days."""
    cfg = ctx.pipeline
    tz = cfg.source.timezone
    fp = fingerprint(ctx)
    days = [ctx.session_date - timedelta(days=i) for i in range(cfg.aggregate.lookback_days - 1, -1, -1)]
    census = _census(wh, ctx, days, tables)

    stored: dict[date, Committed] = {}
    to_compute: dict[date, str] = {}
    for d in days:
        part = datasets.partial_or_none(ctx, d)
        why = reuse_verdict(part.metadata if part is not None else None, fp, census.of(d))
        if why is None:
            stored[d] = part
        else:
            to_compute[d] = why

    outside: pd.DataFrame | None = None  # rows dated outside the window's days (null or pre-1970 timestamps)
    rows_read = 0
    runs = consecutive_runs(sorted(to_compute))
    for first, last in runs or [(None, None)]:
        if first is None:  # nothing to recompute: only the undated rows, which every scan counts
            p = {**base_params, "window_start": ctx.window.end, "window_end": ctx.window.end}
        else:
            p = {
                **base_params,
                "window_start": day_start(first, tz),
                "window_end": day_start(last + timedelta(days=1), tz),
            }
        # one scan of the run's days: partials and stats (aggregate_daily_partials.sql)
        valid, st = split_scan(wh.query_file(PARTIALS_SQL, p, tables=tables))
        rows_read += int(st["n_rows"].sum())
        inside = st["day"].map(lambda x, a=first, b=last: a is not None and x is not None and a <= x <= b)
        if outside is None:  # every scan counts the undated rows: keep them once
            outside = st[~inside]
        d = first
        while first is not None and d <= last:
            table = valid.filter(pc.equal(valid["day"], pa.scalar(d, valid.schema.field("day").type)))
            table = table.select(PARTIAL_SCHEMA.names).cast(PARTIAL_SCHEMA)
            complete = ctx.now >= day_start(d + timedelta(days=1), tz)
            with ctx.store.writer(ctx.name, INTERACTIONS_DAILY, d, run_id=ctx.run_id) as w:
                w.write_parquet(PARTIAL_FILE, table)
                w.metadata.update(
                    {
                        "run": ctx.run_record(),
                        "day": d.isoformat(),
                        "fingerprint": fp,
                        "census": census.of(d),
                        "stats_rows": _stats_records(st[inside & (st["day"] == d)]),
                        "complete": bool(complete),
                        "rows": table.num_rows,
                        "reason": to_compute[d],
                    }
                )
            if cfg.incremental.partials_table:
                wh.write_table(
                    cfg.incremental.partials_table,
                    table.append_column("day", pa.array([d] * table.num_rows, pa.date32())),
                    mode="replace_partition",
                    partition=d,
                    partition_column="day",
                )
            stored[d] = datasets.partial_or_none(ctx, d)
            d += timedelta(days=1)

    holdout_day = ctx.session_date - timedelta(days=cfg.evaluation.holdout_days - 1)
    stats_parts, parts = [], []
    for d in days:
        part = stored[d]
        stats_parts.append(_stats_frame(d, part.metadata.get("stats_rows", [])))
        t = part.read_parquet(PARTIAL_FILE)
        if t.num_rows:
            parts.append((t, d >= holdout_day, part.run_id))
    pairs, user_changes = sum_partials(parts)
    stats_rows = pd.concat([*stats_parts, outside if outside is not None else stats_parts[0].iloc[:0]])
    info = {
        "fingerprint": fp,
        "census": census.kind,
        "days_reused": len(days) - len(to_compute),
        "days_computed": {d.isoformat(): why for d, why in sorted(to_compute.items())},
        "days_restated": sorted(d.isoformat() for d, why in to_compute.items() if why.startswith("restated")),
        "census_rows": census.rows,
        # events the recomputed days' scans read, each day once (plus the undated rows each scan counts)
        "rows_read": rows_read,
    }
    log.info(
        "aggregate: daily partials",
        extra={"reused": info["days_reused"], "computed": len(to_compute), "census": census.kind},
    )
    return Window(pairs, stats_rows, user_changes, info)
