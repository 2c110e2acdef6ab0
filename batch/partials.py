"""Daily partial aggregates: the aggregate step's window built from one committed partial per event day.

Each event day (in the pipeline's timezone) has a partition of dataset ``interactions_daily`` (``dt=<day>``,
committed like every other output): ``partial.parquet`` (user_id, item_id, weight, n_events of that day's valid
events) and, in its commit marker, what it was made from: the fingerprint of the SQL, event weights, timezone
and source table; the day's census (row count and timestamp checksum, ``aggregate_day_census.sql``); the day's
per-status row counts (what the data stats need); whether the day was over when it was made.

A run reads the census of every window day (only the ts column) and reuses a day's partial when its fingerprint
and census still match and the day was over; every other day (new, restated by late events, made by other SQL
or weights, or still in progress) is recomputed with ``aggregate_daily_partials.sql`` over runs of consecutive
days. The window's interactions are the sums of the partials (the holdout split falls on day boundaries), equal
to a full scan's (tests/incremental/test_partials.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa

from batch import datasets
from batch.context import StepContext
from batch.datasets import INTERACTIONS_DAILY
from batch.storage import Committed
from batch.warehouse.base import Warehouse, load_sql

log = logging.getLogger(__name__)

PARTIAL_FILE = "partial.parquet"
PARTIAL_SCHEMA = pa.schema(
    [("user_id", pa.string()), ("item_id", pa.string()), ("weight", pa.float64()), ("n_events", pa.int64())]
)
CENSUS_SQL = "aggregate_day_census"
PARTIALS_SQL = "aggregate_daily_partials"
STATS_SQL = "aggregate_stats"


def fingerprint(ctx: StepContext) -> str:
    """What a partial depends on: a partial made under another fingerprint is never reused."""
    cfg = ctx.pipeline
    blob = json.dumps(
        {
            "sql": [load_sql(CENSUS_SQL), load_sql(PARTIALS_SQL), load_sql(STATS_SQL)],
            "event_weights": sorted(cfg.aggregate.event_weights.items()),
            "timezone": cfg.source.timezone,
            "events_table": cfg.source.events_table,
        },
        sort_keys=True,
    ).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def day_start(d: date, timezone: str) -> datetime:
    return datetime.combine(d, time.min, tzinfo=ZoneInfo(timezone)).astimezone(UTC)


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

    pairs: pd.DataFrame  # aggregate.PAIR_COLUMNS
    stats_rows: pd.DataFrame  # status, day, n_rows, max_ts (as aggregate_stats.sql returns them)
    user_changes: pd.DataFrame  # user_id, changed_run: the latest run that (re)computed a day of the user's
    info: dict = field(default_factory=dict)


def _census(wh: Warehouse, ctx: StepContext, tables: dict) -> dict[date, dict]:
    w = ctx.window
    rows = wh.query_file(
        CENSUS_SQL,
        {"window_start": w.start, "window_end": w.end, "timezone": ctx.pipeline.source.timezone},
        tables=tables,
    ).to_pylist()
    return {
        _as_date(r["day"]): {"n_rows": int(r["n_rows"]), "ts_checksum": int(r["ts_checksum"] or 0)}
        for r in rows
    }


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


def reuse_verdict(marker_meta: dict | None, fp: str, census: dict) -> str | None:
    """None when a stored partial can be reused, else why the day is (re)computed."""
    if marker_meta is None:
        return "new"
    if marker_meta.get("fingerprint") != fp:
        return "aggregate SQL, event weights or timezone changed"
    if not marker_meta.get("complete"):
        return "the day was not over when its partial was made"
    if marker_meta.get("census") != census:
        return "restated: the day's events changed since its partial was made"
    return None


def build_window(ctx: StepContext, wh: Warehouse, base_params: dict, tables: dict) -> Window:
    """Reuse or recompute each day's partial, then sum the window's days."""
    cfg = ctx.pipeline
    tz = cfg.source.timezone
    fp = fingerprint(ctx)
    days = [ctx.session_date - timedelta(days=i) for i in range(cfg.aggregate.lookback_days - 1, -1, -1)]
    census = _census(wh, ctx, tables)
    empty_census = {"n_rows": 0, "ts_checksum": 0}

    stored: dict[date, Committed] = {}
    to_compute: dict[date, str] = {}
    for d in days:
        part = datasets.partial_or_none(ctx, d)
        why = reuse_verdict(part.metadata if part is not None else None, fp, census.get(d, empty_census))
        if why is None:
            stored[d] = part
        else:
            to_compute[d] = why

    stats_parts: list[pd.DataFrame] = []
    outside: pd.DataFrame | None = None  # rows dated outside the window's days (null or pre-1970 timestamps)
    rows_read = 0
    runs = consecutive_runs(sorted(to_compute))
    for first, last in runs or [(None, None)]:
        if first is None:  # nothing to recompute: only the undated rows, which every stats query counts
            p = {**base_params, "window_start": ctx.window.end, "window_end": ctx.window.end}
        else:
            p = {
                **base_params,
                "window_start": day_start(first, tz),
                "window_end": day_start(last + timedelta(days=1), tz),
            }
        st = wh.query_file(STATS_SQL, p, tables=tables).to_pandas()
        st_day = st["day"].map(_as_date)
        inside = st_day.map(lambda x, a=first, b=last: a is not None and x is not None and a <= x <= b)
        if outside is None:
            outside = st[~inside]
        rows_read += int(st["n_rows"].sum()) if first is not None else int(st.loc[~inside, "n_rows"].sum())
        if first is None:
            continue
        computed = wh.query_file(PARTIALS_SQL, p, tables=tables)
        frame = computed.to_pandas()
        frame["day"] = frame["day"].map(_as_date)
        d = first
        while d <= last:
            day_rows = frame[frame["day"] == d]
            table = pa.Table.from_pandas(
                day_rows[["user_id", "item_id", "weight", "n_events"]].astype(
                    {"weight": np.float64, "n_events": np.int64}
                ),
                schema=PARTIAL_SCHEMA,
                preserve_index=False,
            )
            day_stats = st[inside & (st_day == d)]
            complete = ctx.now >= day_start(d + timedelta(days=1), tz)
            with ctx.store.writer(ctx.name, INTERACTIONS_DAILY, d, run_id=ctx.run_id) as w:
                w.write_parquet(PARTIAL_FILE, table)
                w.metadata.update(
                    {
                        "run": ctx.run_record(),
                        "day": d.isoformat(),
                        "fingerprint": fp,
                        "census": census.get(d, empty_census),
                        "stats_rows": _stats_records(day_stats),
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
    pieces, changes = [], []
    for d in days:
        part = stored[d]
        stats_parts.append(_stats_frame(d, part.metadata.get("stats_rows", [])))
        t = part.read_parquet(PARTIAL_FILE)
        n = t.num_rows
        if n == 0:
            continue
        in_holdout = d >= holdout_day
        zeros_f = pa.array(np.zeros(n, np.float64))
        pieces.append(
            pa.table(
                {
                    "user_id": t["user_id"],
                    "item_id": t["item_id"],
                    "weight": t["weight"],
                    "weight_train": zeros_f if in_holdout else t["weight"],
                    "holdout_events": t["n_events"] if in_holdout else pa.array(np.zeros(n, np.int64)),
                }
            )
        )
        users = pd.unique(t["user_id"].to_numpy(zero_copy_only=False))
        changes.append(pd.DataFrame({"user_id": users, "changed_run": part.run_id}))
    if pieces:
        summed = (
            pa.concat_tables(pieces)
            .group_by(["user_id", "item_id"])
            .aggregate([("weight", "sum"), ("weight_train", "sum"), ("holdout_events", "sum")])
        )
        pairs = pd.DataFrame(
            {
                "user_id": summed["user_id"].to_numpy(zero_copy_only=False),
                "item_id": summed["item_id"].to_numpy(zero_copy_only=False),
                "weight": summed["weight_sum"].to_numpy(),
                "weight_train": summed["weight_train_sum"].to_numpy(),
                "holdout_events": summed["holdout_events_sum"].to_numpy(),
            }
        )
        user_changes = pd.concat(changes).groupby("user_id", as_index=False)["changed_run"].max()
    else:
        pairs = pd.DataFrame(
            {c: [] for c in ("user_id", "item_id", "weight", "weight_train", "holdout_events")}
        )
        user_changes = pd.DataFrame({"user_id": [], "changed_run": []})
    stats_rows = pd.concat([*stats_parts, outside if outside is not None else stats_parts[0].iloc[:0]])
    info = {
        "fingerprint": fp,
        "days_reused": len(days) - len(to_compute),
        "days_computed": {d.isoformat(): why for d, why in sorted(to_compute.items())},
        "days_restated": sorted(d.isoformat() for d, why in to_compute.items() if why.startswith("restated")),
        "census_rows": int(sum(c["n_rows"] for c in census.values())),
        "rows_read": rows_read,
    }
    log.info("aggregate: daily partials", extra={"reused": info["days_reused"], "computed": len(to_compute)})
    return Window(pairs, stats_rows, user_changes, info)
