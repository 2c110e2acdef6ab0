"""Daily partial aggregates: the incremental window equals a full scan, partials are reused, restated days and
changed config are recomputed."""

from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pyarrow as pa
import pytest

from batch.config import load_environment
from batch.data import EVENT_SCHEMA
from batch.steps import aggregate
from batch.warehouse import open_warehouse

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
