"""aggregate: raw events in the warehouse -> weighted user-item interactions, id maps and data stats.

The SQL (``batch/sql/aggregate_*.sql``) is BigQuery Standard SQL, run as is on BigQuery and through sqlglot on
DuckDB. Rows with null ids, unknown event types, timestamps in the future or before 1970, and exact duplicates
are dropped and counted. Only events up to the end of the session date (in the pipeline's timezone) are read.

Outputs (dataset ``interactions``):
- ``interactions.parquet``: user_idx, item_idx, weight, weight_train, holdout_events (sorted by user, item)
- ``users.parquet``: user_idx, user_id, n_items   (n_items 0: below min_user_events, served by the fallback)
- ``items.parquet``: item_idx, item_id, available, n_users, weight
- ``stats.json``: counts by reason, per-day volumes, latest event, window
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from batch import partials
from batch.config import SourceConfig, read_source_sql, sql_dir
from batch.context import StepContext
from batch.datasets import INTERACTIONS
from batch.errors import NoEventsError
from batch.graph import step
from batch.metrics_store import timing_rows
from batch.warehouse import Relation

log = logging.getLogger(__name__)

DROP_REASONS = ("null_id", "bad_timestamp", "unknown_event_type", "duplicate")


@dataclass
class Aggregated:
    interactions: pd.DataFrame  # user_idx, item_idx, weight, weight_train, holdout_events
    users: pd.DataFrame  # user_idx, user_id, n_items
    items: pd.DataFrame  # item_idx, item_id, available, n_users, weight


def source_relations(source: SourceConfig) -> dict[str, str | Relation]:
    """What fills ``{events_table}`` and ``{items_table}`` in batch/sql: the pipeline's tables, or the relations its
    own SQL files (``source.events_sql`` / ``items_sql``, under config/sql/) make of them."""
    raw = {"events_table": source.events_table}
    if source.items_table:
        raw["items_table"] = source.items_table
    out: dict[str, str | Relation] = dict(raw)
    for placeholder, name in (("events_table", source.events_sql), ("items_table", source.items_sql)):
        if name:
            out[placeholder] = Relation(read_source_sql(name), raw, origin=str(sql_dir() / name))
    return out


def query_params(ctx: StepContext) -> dict:
    w = ctx.window
    return {
        "window_start": w.start,
        "window_end": w.end,
        "holdout_start": w.holdout_start,
        "now": ctx.now,
        "timezone": ctx.pipeline.source.timezone,
        "event_weights": [
            {"event_type": k, "weight": float(v)} for k, v in ctx.pipeline.aggregate.event_weights.items()
        ],
    }


def summarize_stats(rows: pd.DataFrame) -> dict:
    """Per-status, per-day counts from aggregate_stats.sql -> the step's data stats."""
    by_status = rows.groupby("status")["n_rows"].sum().to_dict() if len(rows) else {}
    valid = rows[rows["status"] == "valid"] if len(rows) else rows
    per_day = (
        {str(d): int(n) for d, n in valid.groupby("day")["n_rows"].sum().sort_index().items()}
        if len(valid)
        else {}
    )
    latest = valid["max_ts"].max() if len(valid) else None
    return {
        "rows_scanned": int(sum(by_status.values())),
        "events_valid": int(by_status.get("valid", 0)),
        "dropped": {reason: int(by_status.get(reason, 0)) for reason in DROP_REASONS},
        "events_per_day": per_day,
        "latest_event_ts": None if latest is None or pd.isna(latest) else pd.Timestamp(latest).isoformat(),
    }


PAIR_COLUMNS = ["user_id", "item_id", "weight", "weight_train", "holdout_events"]


def pairs_table(table: pa.Table) -> pa.Table:
    """The columns build_interactions uses. COUNTIF arrives from DuckDB as DECIMAL(38, 0): cast it in Arrow,
    not as millions of Python Decimal objects."""
    table = table.select(PAIR_COLUMNS)
    i = table.schema.get_field_index("holdout_events")
    if not pa.types.is_integer(table.schema.field(i).type):
        table = table.set_column(i, "holdout_events", table.column(i).cast(pa.int64()))
    return table


def sorted_codes(ids: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(code of each id, the distinct ids sorted): pandas.factorize(sort=True) in Arrow, without making a
    Python string of every row (Arrow sorts UTF-8 by bytes, which is the order of Python's str comparison)."""
    ids = ids.cast(pa.large_string())  # large_string: no 2 GiB offset limit on the combined column
    if isinstance(ids, pa.ChunkedArray):  # one dictionary for all rows
        ids = ids.combine_chunks()
    encoded = pc.dictionary_encode(ids)
    order = pc.sort_indices(encoded.dictionary).to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64)
    codes = rank[encoded.indices.to_numpy(zero_copy_only=False)]
    return codes, np.asarray(encoded.dictionary.take(order).to_pylist(), dtype=object)


def _column(table: pa.Table, name: str, dtype) -> np.ndarray:
    return table[name].to_numpy().astype(dtype, copy=False)


def build_interactions(
    pairs: pa.Table, availability: pd.DataFrame | None, *, min_user_events: int, min_item_users: int
) -> Aggregated:
    """Aggregated (user_id, item_id) rows -> integer-indexed interactions and id maps.

    Items with fewer than ``min_item_users`` users are dropped; users left with fewer than ``min_user_events``
    items keep their id (they still get recommendations, from the popularity fallback) but no rows.
    Indices follow sorted ids, so the same input always gives the same indices.
    """
    # Integer codes once (sorted, so indices follow sorted ids); the filters then run on integers, not strings.
    u_codes, all_users = sorted_codes(pairs["user_id"])
    i_codes, all_items = sorted_codes(pairs["item_id"])
    n_all_items = max(len(all_items), 1)
    row_key = u_codes * n_all_items + i_codes
    # one stable sort by (user, item) serves the distinct pairs and the output order (ties in input order)
    by_key = np.argsort(row_key, kind="stable")
    pair_key = row_key[by_key]
    # distinct (user, item); not np.unique, whose hash path (numpy >= 2.3) is ~100x slower on millions of int64
    pair_key = pair_key[np.concatenate(([True], pair_key[1:] != pair_key[:-1]))]
    pair_item = pair_key % n_all_items
    keep_item = np.bincount(pair_item, minlength=len(all_items)) >= min_item_users
    kept_pairs = pair_key[keep_item[pair_item]]
    keep_user = np.bincount(kept_pairs // n_all_items, minlength=len(all_users)) >= min_user_events
    mask = keep_item[i_codes] & keep_user[u_codes]
    present = np.zeros(len(all_items), dtype=bool)
    present[i_codes[mask]] = True  # items left with at least one kept row
    item_ids = all_items[present]
    item_remap = np.cumsum(present, dtype=np.int64) - 1  # keeps the order: sorted by key is sorted by index
    rows = by_key[mask[by_key]]  # the kept rows by (user, item)
    inter = pd.DataFrame(
        {
            "user_idx": u_codes[rows].astype(np.int32),
            "item_idx": item_remap[i_codes[rows]].astype(np.int32),
            "weight": _column(pairs, "weight", np.float32)[rows],
            "weight_train": _column(pairs, "weight_train", np.float32)[rows],
            "holdout_events": _column(pairs, "holdout_events", np.int32)[rows],
        }
    )
    users = pd.DataFrame({"user_idx": np.arange(len(all_users), dtype=np.int32), "user_id": all_users})
    users["n_items"] = np.bincount(inter["user_idx"], minlength=len(users)).astype(np.int32)
    items = pd.DataFrame({"item_idx": np.arange(len(item_ids), dtype=np.int32), "item_id": item_ids})
    if availability is not None and len(availability):
        avail = availability.drop_duplicates("item_id", keep="last").set_index("item_id")["available"]
        # Items missing from the catalogue table are assumed on sale: a late catalogue must not empty the frame.
        items["available"] = items["item_id"].map(avail).fillna(True).astype(bool).to_numpy()
    else:
        items["available"] = True
    items["n_users"] = np.bincount(inter["item_idx"], minlength=len(items)).astype(np.int32)
    items["weight"] = np.bincount(inter["item_idx"], weights=inter["weight"], minlength=len(items)).astype(
        np.float32
    )
    return Aggregated(inter, users, items)


STAT_METRICS = (
    "rows_scanned",
    "events_valid",
    "users",
    "users_with_history",
    "items",
    "items_available",
    "interactions",
    "holdout_interactions",
)


def metric_rows(result: dict) -> list:
    stats = result.get("stats") or {}
    rows: list = [(key, None, stats[key]) for key in STAT_METRICS if key in stats]
    rows += [("dropped", {"reason": reason}, n) for reason, n in (stats.get("dropped") or {}).items()]
    read = result.get("events_read") or {}
    rows += [
        (f"events_read_{k}", None, read[k])
        for k in ("rows_read", "bytes_processed", "days_reused")
        if k in read
    ]
    return rows + timing_rows(result.get("timings"))


def summarize(meta: dict) -> dict:
    out = {"data": meta.get("stats", {})}
    if meta.get("events_read"):
        out["events_read"] = meta["events_read"]
    return out


@step(
    name="aggregate",
    writes=INTERACTIONS,
    metrics=metric_rows,
    summarize=summarize,
    description="events -> weighted interactions, id maps, data stats",
)
def run(ctx: StepContext) -> dict:
    cfg = ctx.pipeline
    params = query_params(ctx)
    relations = source_relations(cfg.source)
    tables = {"events_table": relations["events_table"]}
    events_from = cfg.source.events_table + (
        f" through {cfg.source.events_sql}" if cfg.source.events_sql else ""
    )
    started = time.perf_counter()
    partial_window = None
    with ctx.open_warehouse() as wh:
        if cfg.incremental.enabled:
            # the window from daily partials: only new, restated or changed days are read (batch/partials.py)
            partial_window = partials.build_window(ctx, wh, params, tables)
            stats_rows = partial_window.stats_rows
        else:
            stats_rows = wh.query_file("aggregate_stats", params, tables=tables).to_pandas()
        stats = summarize_stats(stats_rows)
        if stats["events_valid"] == 0:
            raise NoEventsError(
                f"no usable events for pipeline {cfg.name} in {events_from} between "
                f"{ctx.window.start.isoformat()} and {ctx.window.end.isoformat()} "
                f"(session date {ctx.session_date}, lookback {cfg.aggregate.lookback_days} days; "
                f"dropped: {stats['dropped']}); nothing was written or published"
            )
        if partial_window is not None:
            pairs = partial_window.pairs
        else:
            pairs = pairs_table(wh.query_file("aggregate_interactions", params, tables=tables))
        availability = None
        if "items_table" in relations:
            availability = wh.query_file(
                "items_available",
                {"window_end": ctx.window.end},
                tables={"items_table": relations["items_table"]},
            ).to_pandas()
        bytes_processed = getattr(wh, "bytes_processed", None)
    query_s = time.perf_counter() - started
    agg = build_interactions(
        pairs,
        availability,
        min_user_events=cfg.aggregate.min_user_events,
        min_item_users=cfg.aggregate.min_item_users,
    )
    if agg.interactions.empty:
        raise NoEventsError(
            f"pipeline {cfg.name}: {stats['events_valid']} events in the window, but none left after "
            f"min_item_users={cfg.aggregate.min_item_users} and min_user_events={cfg.aggregate.min_user_events}"
        )
    stats.update(
        {
            "window": {
                "start": ctx.window.start.isoformat(),
                "end": ctx.window.end.isoformat(),
                "holdout_start": ctx.window.holdout_start.isoformat(),
            },
            "users": int(len(agg.users)),
            "users_with_history": int((agg.users["n_items"] > 0).sum()),
            "items": int(len(agg.items)),
            "items_available": int(agg.items["available"].sum()),
            "interactions": int(len(agg.interactions)),
            "holdout_interactions": int((agg.interactions["holdout_events"] > 0).sum()),
        }
    )
    # events the interaction queries read: a full scan reads the window twice (stats, interactions); the
    # partials read the census (ts only, or partition metadata: no rows) and the recomputed days once
    events_read = (
        {"mode": "partials", **partial_window.info}
        if partial_window is not None
        else {"mode": "full scan", "rows_read": 2 * stats["rows_scanned"]}
    )
    if bytes_processed is not None:
        events_read["bytes_processed"] = int(bytes_processed)
    with ctx.store.writer(cfg.name, INTERACTIONS, ctx.session_date, run_id=ctx.run_id) as w:
        w.write_parquet("interactions.parquet", pa.Table.from_pandas(agg.interactions, preserve_index=False))
        if partial_window is not None:
            # which run last (re)computed a day of each user: candidates recompute users changed since the parent
            w.write_parquet(
                "user_changes.parquet",
                pa.Table.from_pandas(partial_window.user_changes, preserve_index=False),
            )
        w.write_parquet("users.parquet", pa.Table.from_pandas(agg.users, preserve_index=False))
        w.write_parquet("items.parquet", pa.Table.from_pandas(agg.items, preserve_index=False))
        w.write_json("stats.json", stats)
        summary = {
            "stats": stats,
            "events_read": events_read,
            "timings": {"query_s": round(query_s, 3), "total_s": round(time.perf_counter() - started, 3)},
        }
        w.metadata.update({"run": ctx.run_record(), **summary})
    log.info(
        "aggregate done",
        extra={
            "pipeline": cfg.name,
            "dt": str(ctx.session_date),
            **stats["dropped"],
            "interactions": stats["interactions"],
        },
    )
    return summary
