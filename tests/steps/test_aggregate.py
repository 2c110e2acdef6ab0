"""The aggregate SQL on DuckDB (the same file BigQuery runs): weights, drops, the window, no leakage."""

from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pyarrow as pa
import pytest

from batch.config import load_environment
from batch.data import EVENT_SCHEMA, ITEM_SCHEMA
from batch.errors import NoEventsError
from batch.steps import aggregate
from batch.warehouse import open_warehouse
from batch.warehouse.base import load_sql
from batch.warehouse.duckdb import transpile

D = date(2026, 11, 21)
JST_MIDNIGHT_AFTER = datetime(2026, 11, 21, 15, 0, tzinfo=UTC)  # 2026-11-22 00:00 in Asia/Tokyo
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _events(rows):
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "ts"])
    return pa.Table.from_pandas(df, schema=EVENT_SCHEMA, preserve_index=False)


def _load(reco_home, rows, items=None):
    with open_warehouse(load_environment("local")) as wh:
        wh.write_table("demo_events", _events(rows), mode="replace")
        if items is None:
            items = pa.table(
                {"item_id": ["a", "b", "c"], "available_from": [None] * 3, "available_until": [None] * 3},
                schema=ITEM_SCHEMA,
            )
        wh.write_table("demo_items", items, mode="replace")


def t(days_before_end: float) -> datetime:
    return JST_MIDNIGHT_AFTER - timedelta(days=days_before_end)


@pytest.fixture
def ctx(make_ctx):
    return make_ctx(
        overrides={
            "aggregate.min_item_users": "1",
            "evaluation.holdout_days": "1",
            "aggregate.lookback_days": "7",
        },
        now=NOW,
    )


def test_sql_file_transpiles_for_duckdb():
    sql = transpile(load_sql("aggregate_interactions").format(events_table="`demo_events`"))
    assert "$window_start" in sql and "$event_weights" in sql and "@holdout_start)" not in sql


def test_weights_drops_and_window(reco_home, ctx):
    w = ctx.pipeline.aggregate.event_weights
    rows = [
        ("u1", "a", "view", t(3)),
        ("u1", "a", "like", t(2)),
        ("u1", "b", "bookmark", t(0.5)),  # b in holdout
        ("u2", "a", "view", t(0.01)),  # 23:59 JST on the session date: inside
        ("u2", "c", "view", t(-0.01)),  # 00:00+ JST the next day: the future of D, unseen
        ("u2", "c", "view", t(7.01)),  # before the 7-day window
        (None, "a", "view", t(1)),  # null id
        ("u3", "", "view", t(1)),  # empty id
        ("u3", "a", "share", t(1)),  # unknown event type
        ("u3", "a", "view", datetime(1969, 12, 31, tzinfo=UTC)),  # before 1970
        ("u1", "a", "view", t(3)),  # exact duplicate
    ]
    _load(reco_home, rows)
    summary = aggregate.run(ctx)
    stats = summary["stats"]
    assert stats["dropped"] == {"null_id": 2, "bad_timestamp": 1, "unknown_event_type": 1, "duplicate": 1}
    assert stats["events_valid"] == 4
    c = ctx.store.committed("demo", "interactions", D, step="aggregate")
    inter = c.read_parquet("interactions.parquet").to_pandas()
    users = c.read_parquet("users.parquet").to_pandas().set_index("user_idx")["user_id"]
    items = c.read_parquet("items.parquet").to_pandas().set_index("item_idx")["item_id"]
    inter["user"] = inter["user_idx"].map(users)
    inter["item"] = inter["item_idx"].map(items)
    got = {(r.user, r.item): (r.weight, r.weight_train, r.holdout_events) for r in inter.itertuples()}
    assert got == {
        ("u1", "a"): (w["view"] + w["like"], w["view"] + w["like"], 0),
        ("u1", "b"): (w["bookmark"], 0.0, 1),
        ("u2", "a"): (w["view"], 0.0, 1),
    }
    assert set(users) == {"u1", "u2"}  # u3 had only invalid rows


def test_events_in_the_future_of_now_are_dropped(reco_home, make_ctx):
    ctx = make_ctx(overrides={"aggregate.min_item_users": "1"}, now=t(1))  # the run happens "yesterday"
    _load(reco_home, [("u1", "a", "view", t(2)), ("u1", "b", "view", t(0.5))])
    stats = aggregate.run(ctx)["stats"]
    assert stats["dropped"]["bad_timestamp"] == 1 and stats["events_valid"] == 1


def test_backfill_never_sees_its_future(reco_home, make_ctx):
    """The same table aggregated for an older date uses only events up to that date."""
    rows = [("u1", "a", "view", t(10)), ("u1", "b", "view", t(1)), ("u2", "b", "view", t(0.2))]
    _load(reco_home, rows)
    old = make_ctx(session_date=D - timedelta(days=5), overrides={"aggregate.min_item_users": "1"}, now=NOW)
    stats = aggregate.run(old)["stats"]
    assert stats["events_valid"] == 1
    users = (
        old.store.committed("demo", "interactions", old.session_date, step="aggregate")
        .read_parquet("users.parquet")
        .column("user_id")
        .to_pylist()
    )
    assert users == ["u1"]


def test_item_availability_at_the_session_date(reco_home, ctx):
    items = pa.table(
        {
            "item_id": ["a", "b", "c"],
            "available_from": [None, None, JST_MIDNIGHT_AFTER + timedelta(days=1)],  # c arrives after D
            "available_until": [t(2), None, None],  # a left sale before the end of D
        },
        schema=ITEM_SCHEMA,
    )
    _load(reco_home, [("u1", "a", "view", t(3)), ("u1", "b", "view", t(2)), ("u2", "c", "view", t(2))], items)
    aggregate.run(ctx)
    got = (
        ctx.store.committed("demo", "interactions", D, step="aggregate")
        .read_parquet("items.parquet")
        .to_pandas()
    )
    assert dict(zip(got["item_id"], got["available"])) == {"a": False, "b": True, "c": False}


def test_no_events_in_window_is_a_clear_error_and_writes_nothing(reco_home, ctx):
    _load(reco_home, [("u1", "a", "view", t(30))])
    with pytest.raises(NoEventsError, match="no usable events for pipeline demo"):
        aggregate.run(ctx)
    assert not ctx.store.exists("demo", "interactions", D)


def test_build_interactions_thresholds():
    pairs = pa.table(
        {
            "user_id": ["u1", "u1", "u2", "u3"],
            "item_id": ["a", "b", "a", "c"],
            "weight": [1.0, 2.0, 3.0, 4.0],
            "weight_train": [1.0, 2.0, 3.0, 4.0],
            "holdout_events": [0, 0, 0, 0],
        }
    )
    agg = aggregate.build_interactions(pairs, None, min_user_events=1, min_item_users=2)
    # items b and c have one user each: dropped; u3 is left without history but keeps its id (fallback)
    assert list(agg.items["item_id"]) == ["a"]
    assert dict(zip(agg.users["user_id"], agg.users["n_items"])) == {"u1": 1, "u2": 1, "u3": 0}
    agg = aggregate.build_interactions(pairs, None, min_user_events=2, min_item_users=1)
    assert dict(zip(agg.users["user_id"], agg.users["n_items"])) == {"u1": 2, "u2": 0, "u3": 0}
    agg = aggregate.build_interactions(pairs, None, min_user_events=1, min_item_users=1)
    assert len(agg.interactions) == 4 and list(agg.users["user_id"]) == ["u1", "u2", "u3"]
    assert agg.items.set_index("item_id").loc["a", "weight"] == 4.0
