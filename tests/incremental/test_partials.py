"""Daily partial aggregates: the incremental window equals a full scan, partials are reused, restated days and
changed config are recomputed."""

from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pyarrow as pa
import pytest

from batch.config import load_environment
from batch.context import StepContext
from batch.data import EVENT_SCHEMA
from batch.partials import CENSUS_METADATA, CENSUS_TS_SCAN, utc_days
from batch.steps import aggregate
from batch.warehouse import open_warehouse
from batch.warehouse.duckdb import DuckDBWarehouse

D = date(2026, 11, 21)
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
INC = {"incremental.enabled": "true"}


def _committed(ctx):
    c = ctx.store.committed("demo", "interactions", ctx.session_date, step="aggregate")
    return {
        "interactions": c.read_parquet("interactions.parquet").to_pandas(),
        "users": c.read_parquet("users.parquet").to_pandas(),
        "items": c.read_parquet("items.parquet").to_pandas(),
        "stats": c.read_json("stats.json"),
        "events_read": c.metadata["events_read"],
    }


def _same(a, b):
    for name in ("interactions", "users", "items"):
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True)
    assert a["stats"] == b["stats"]


def _aggregate(make_ctx, session=D, extra=None, now=NOW):
    ctx = make_ctx(session, overrides={**(extra or {})}, now=now)
    aggregate.run(ctx)
    return ctx, _committed(ctx)


def _append_events(rows):
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "ts"])
    with open_warehouse(load_environment("local")) as wh:
        wh.write_table(
            "demo_events", pa.Table.from_pandas(df, schema=EVENT_SCHEMA, preserve_index=False), mode="append"
        )
    for ts in df["ts"]:  # as BigQuery does: a load into a partition sets its last_modified_time
        PartitionedDuckDB.modified[ts.date()] = datetime.now(UTC)


def test_incremental_window_equals_full_scan_and_reuses_partials(small_data, make_ctx):
    _, full = _aggregate(make_ctx)
    ctx, inc = _aggregate(make_ctx, extra=INC)
    _same(full, inc)
    lookback = ctx.pipeline.aggregate.lookback_days
    assert inc["events_read"]["days_reused"] == 0 and len(inc["events_read"]["days_computed"]) == lookback
    # the next day: only that day is read, the other days come from their partials
    _, full_next = _aggregate(make_ctx, D + timedelta(days=1))
    ctx2, inc_next = _aggregate(make_ctx, D + timedelta(days=1), INC)
    _same(full_next, inc_next)
    read = inc_next["events_read"]
    assert read["days_reused"] == lookback - 1
    assert list(read["days_computed"]) == [(D + timedelta(days=1)).isoformat()]
    assert read["rows_read"] < full_next["events_read"]["rows_read"] / (lookback - 2)
    # a rerun of the same date reads no day again
    _, again = _aggregate(make_ctx, D + timedelta(days=1), INC)
    assert again["events_read"]["days_reused"] == lookback
    _same(full_next, again)


def test_late_events_for_a_past_day_recompute_that_day(small_data, make_ctx):
    _aggregate(make_ctx, extra=INC)
    past = D - timedelta(days=5)
    late_ts = datetime(past.year, past.month, past.day, 3, 0, tzinfo=UTC)  # 12:00 JST that day
    _append_events([("u_late", "i00001", "bookmark", late_ts), ("u_late", "i00002", "view", late_ts)])
    _, inc = _aggregate(make_ctx, extra=INC)
    read = inc["events_read"]
    assert read["days_restated"] == [past.isoformat()]
    assert list(read["days_computed"]) == [past.isoformat()]
    _, full = _aggregate(make_ctx)
    _same(full, inc)
    assert "u_late" in set(inc["users"]["user_id"])


def test_partials_of_other_event_weights_are_not_reused(small_data, make_ctx):
    ctx, _ = _aggregate(make_ctx, extra=INC)
    other = {**INC, "aggregate.event_weights": "{view: 1.0, like: 2.0, bookmark: 9.0}"}
    _, inc = _aggregate(make_ctx, extra=other)
    read = inc["events_read"]
    assert read["days_reused"] == 0
    assert set(read["days_computed"].values()) == {"aggregate SQL, event weights or timezone changed"}
    _, full = _aggregate(make_ctx, extra={"aggregate.event_weights": other["aggregate.event_weights"]})
    _same(full, inc)


def test_a_day_still_in_progress_is_recomputed(small_data, make_ctx):
    during = datetime(2026, 11, 21, 6, 0, tzinfo=UTC)  # 15:00 JST on the session date
    _aggregate(make_ctx, extra=INC, now=during)
    _, inc = _aggregate(make_ctx, extra=INC)
    assert list(inc["events_read"]["days_computed"]) == [D.isoformat()]
    assert inc["events_read"]["days_computed"][D.isoformat()].startswith("the day was not over")
    _, full = _aggregate(make_ctx)
    _same(full, inc)


@pytest.mark.parametrize("days", [[], [D], [D, D + timedelta(days=1), D + timedelta(days=3)]])
def test_consecutive_runs(days):
    from batch.partials import consecutive_runs

    runs = consecutive_runs(days)
    assert [d for a, b in runs for d in pd.date_range(a, b).date] == days


class PartitionedDuckDB(DuckDBWarehouse):
    """The local warehouse with BigQuery's partition metadata of an events table partitioned by DAY on ts: rows
    per UTC day counted here, last modification times kept in ``modified`` (set when a test adds events)."""

    modified: dict[date, datetime] = {}
    calls: list[tuple[str, date, date]] = []

    def partition_census(self, table, first_day, last_day, *, ts_column="ts"):
        self.calls.append((table, first_day, last_day))
        rows = self.con.execute(
            f"SELECT CAST({ts_column} AS DATE) AS day, count(*) FROM {self._local_name(table)} "
            f"WHERE CAST({ts_column} AS DATE) BETWEEN ? AND ? GROUP BY day",
            [first_day, last_day],
        ).fetchall()
        loaded = datetime(2026, 11, 1, tzinfo=UTC)
        return {d: (int(n), self.modified.get(d, loaded)) for d, n in rows}


@pytest.fixture
def partition_metadata(monkeypatch, reco_home):
    """Every step's warehouse is PartitionedDuckDB: the census comes from partition metadata."""
    PartitionedDuckDB.modified = {}
    PartitionedDuckDB.calls = []
    monkeypatch.setattr(
        StepContext, "open_warehouse", lambda self: PartitionedDuckDB(self.env.resolved_duckdb_path())
    )


def test_utc_days_of_a_day_in_tokyo_and_in_utc():
    assert utc_days(D, "Asia/Tokyo") == [D - timedelta(days=1), D]
    assert utc_days(D, "UTC") == [D]


def test_census_from_partition_metadata_equals_full_scan_and_reads_no_census_rows(
    small_data, make_ctx, partition_metadata
):
    _, full = _aggregate(make_ctx)
    ctx, inc = _aggregate(make_ctx, extra=INC)
    _same(full, inc)
    read = inc["events_read"]
    assert read["census"] == CENSUS_METADATA
    lookback = ctx.pipeline.aggregate.lookback_days
    first, last = D - timedelta(days=lookback), D  # JST days start at 15:00 UTC the day before
    assert PartitionedDuckDB.calls[-1] == ("demo_events", first, last)
    ts = small_data[0].column("ts").to_pandas().dt.date
    assert read["census_rows"] == int(((ts >= first) & (ts <= last)).sum())
    # the next run: unchanged partitions, every day reused
    _, again = _aggregate(make_ctx, extra=INC)
    assert again["events_read"]["days_reused"] == lookback
    assert again["events_read"]["rows_read"] < read["rows_read"] / lookback
    _same(full, again)


def test_a_modified_partition_recomputes_the_days_it_overlaps(small_data, make_ctx, partition_metadata):
    _aggregate(make_ctx, extra=INC)
    past = D - timedelta(days=5)
    late_ts = datetime(past.year, past.month, past.day, 3, 0, tzinfo=UTC)  # 12:00 JST that day
    _append_events([("u_late", "i00001", "bookmark", late_ts)])
    _, inc = _aggregate(make_ctx, extra=INC)
    read = inc["events_read"]
    # UTC partition `past` holds the hours of JST day `past` from 09:00 and of JST day past + 1 until 09:00
    assert read["days_restated"] == [past.isoformat(), (past + timedelta(days=1)).isoformat()]
    assert sorted(read["days_computed"]) == read["days_restated"]
    _, full = _aggregate(make_ctx)
    _same(full, inc)
    assert "u_late" in set(inc["users"]["user_id"])


def test_a_new_modification_time_alone_restates_the_day(small_data, make_ctx, partition_metadata):
    """A replaced event keeps the row count: the modification time is what tells."""
    _aggregate(make_ctx, extra=INC)
    past = D - timedelta(days=9)
    PartitionedDuckDB.modified[past] = datetime(2026, 11, 23, 14, tzinfo=UTC)
    _, inc = _aggregate(make_ctx, extra=INC)
    assert inc["events_read"]["days_restated"] == [past.isoformat(), (past + timedelta(days=1)).isoformat()]


def test_partials_made_under_the_ts_census_are_recomputed_under_metadata(
    small_data, make_ctx, monkeypatch, reco_home
):
    _, before = _aggregate(make_ctx, extra=INC)
    assert before["events_read"]["census"] == CENSUS_TS_SCAN
    PartitionedDuckDB.modified = {}
    monkeypatch.setattr(
        StepContext, "open_warehouse", lambda self: PartitionedDuckDB(self.env.resolved_duckdb_path())
    )
    _, inc = _aggregate(make_ctx, extra=INC)
    read = inc["events_read"]
    assert read["census"] == CENSUS_METADATA and read["days_reused"] == 0
    assert all(why.startswith("the census changed kind") for why in read["days_computed"].values())
    _same(before, inc)
