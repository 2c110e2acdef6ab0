"""The second recommender, `creators` ("creators to follow"): config/pipelines/creators.yaml and its own source SQL
(config/sql/creators_*.sql) on the same generated platform data as the demo; and the generic part it relies on,
``source.events_sql`` / ``items_sql``."""

from __future__ import annotations

import hashlib
import io
import json
from contextlib import redirect_stdout
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import duckdb
import pandas as pd
import pyarrow as pa
import pytest

from batch.cli import main
from batch.config import load_environment, load_pipeline
from batch.data import CATALOGUE_SCHEMA, SyntheticSpec, generate
from batch.errors import ConfigError
from batch.steps.aggregate import source_relations
from batch.warehouse import open_warehouse

SESSION = date(2026, 11, 21)
WINDOW_END = datetime(2026, 11, 21, 15, 0, tzinfo=UTC)  # end of the session date in Asia/Tokyo
SMALL = ["--users", "600", "--items", "300", "--days", "35", "--seed", "3", "--events-per-user", "25"]
FAST = ["--set", "model.iterations=3", "--set", "model.factors=8"]


def _warehouse() -> duckdb.DuckDBPyConnection:
    return duckdb.connect(load_environment("local").resolved_duckdb_path(), read_only=True)


@pytest.fixture(scope="module")
def creators_run(tmp_path_factory):
    """`reco data generate --pipeline creators` then `reco run --pipeline creators --date SESSION`, small; once for
    the tests of this module (they only read what it published)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECO_HOME", str(tmp_path_factory.mktemp("creators") / "var"))
        mp.setenv("RECO_LOG_FORMAT", "text")
        mp.delenv("SLACK_WEBHOOK_URL", raising=False)
        assert main(["data", "generate", "--pipeline", "creators", *SMALL]) == 0
        out = io.StringIO()
        with redirect_stdout(out):
            assert main(["run", "--pipeline", "creators", "--date", str(SESSION), *FAST]) == 0
        summary = json.loads(out.getvalue())
        con = _warehouse()
        try:
            recs = con.execute(
                "SELECT user_id, item_id, rank, source FROM recommendations_creators WHERE dt = ?", [SESSION]
            ).df()
            related = con.execute(
                "SELECT * FROM recommendations_creators_related WHERE dt = ?", [SESSION]
            ).df()
            events = con.execute("SELECT * FROM demo_events").df()
            catalogue = con.execute("SELECT * FROM demo_items").df()
        finally:
            con.close()
    return summary, recs, related, events, catalogue


def test_generate_and_run_publish_creators_to_follow(creators_run):
    summary, recs, related, events, catalogue = creators_run
    assert all(g["passed"] for g in summary["gates"].values()), summary["gates"]
    assert len(recs) > 0
    creators = set(catalogue["creator_id"])
    # creator ids, never item ids, in both frames
    assert set(recs["item_id"]) <= creators and not set(recs["item_id"]) & set(catalogue["item_id"])
    assert set(related["item_id"]) | set(related["related_item_id"]) <= creators
    assert not (related["item_id"] == related["related_item_id"]).any()
    # the aggregate counted creators, not items
    assert summary["data"]["items"] <= len(creators) < len(catalogue)
    # every user of the window gets a shelf, ranked 1..k without repeats
    assert recs["user_id"].nunique() == summary["data"]["users"]
    assert not recs.duplicated(["user_id", "item_id"]).any()
    assert (recs.groupby("user_id")["rank"].agg(lambda r: sorted(r) == list(range(1, len(r) + 1)))).all()


def test_users_are_not_recommended_creators_they_already_interacted_with(creators_run):
    _, recs, _, events, catalogue = creators_run
    pipeline = load_pipeline("creators")
    start = WINDOW_END - timedelta(days=pipeline.aggregate.lookback_days)
    ts = pd.to_datetime(events["ts"], utc=True)
    valid = events[
        events["user_id"].notna()
        & events["event_type"].isin(list(pipeline.aggregate.event_weights))
        & (ts >= start)
        & (ts < WINDOW_END)
    ]
    seen = valid.merge(catalogue[["item_id", "creator_id"]], on="item_id")[["user_id", "creator_id"]]
    seen_pairs = set(map(tuple, seen.drop_duplicates().to_numpy()))
    assert len(seen_pairs) > 1000  # the check below has something to find
    recommended = set(zip(recs["user_id"], recs["item_id"]))
    assert not seen_pairs & recommended
    # and what they are recommended is mostly within their taste: creators whose items they have not seen, yet
    # co-followed by users like them, beat the popularity fallback for most users
    assert (recs["source"] == "personal").mean() > 0.5


# -- the generated catalogue ---------------------------------------------------------------------------------------

# sha256 of the events (ts as int64 us, CSV) of SyntheticSpec(users=600, items=300, days=35, seed=3,
# events_per_user=25) as the generator made them before items had creators (commit 2e2ca64). The demo's published
# recommendations follow from these rows: a change here changes every demo output.
EVENTS_BEFORE_CREATORS = "75d97bb474c0339b11e8a3f85119c8f931ffcced22af74251d8168d8a0bcd60e"


def _digest(events: pa.Table) -> str:
    df = events.to_pandas()
    df["ts"] = df["ts"].astype("int64")
    return hashlib.sha256(df.to_csv(index=False).encode()).hexdigest()


def test_creators_leave_the_demo_events_unchanged():
    spec = SyntheticSpec(users=600, items=300, days=35, seed=3, events_per_user=25)
    events, catalogue = generate(spec)
    assert _digest(events) == EVENTS_BEFORE_CREATORS
    # the creator draws are a stream of their own: other creator settings, same events and items
    other_events, other_catalogue = generate(replace(spec, items_per_creator=3.0, creator_focus=0.5))
    assert other_events.equals(events)
    assert other_catalogue.drop_columns(["creator_id"]).equals(catalogue.drop_columns(["creator_id"]))
    assert not other_catalogue.column("creator_id").equals(catalogue.column("creator_id"))


def test_catalogue_creators_have_power_law_sizes_and_taste():
    spec = SyntheticSpec(users=1500, items=2000, days=20, seed=5)
    events, catalogue = generate(spec)
    assert catalogue.schema == CATALOGUE_SCHEMA
    assert catalogue.column("creator_id").null_count == 0
    assert generate(spec)[1].equals(catalogue)  # seeded
    sizes = catalogue.to_pandas()["creator_id"].value_counts()
    assert sizes.max() > 8 * sizes.median()  # a few creators make many items, most make a few
    # users concentrate on a few creators: far more than if their items were spread over creators at random
    df = events.to_pandas().dropna(subset=["user_id"]).merge(catalogue.to_pandas(), on="item_id")
    shuffled = df.assign(creator_id=df["creator_id"].sample(frac=1, random_state=0).to_numpy())

    def top_creator_share(frame: pd.DataFrame) -> float:
        per_user = frame.groupby(["user_id", "creator_id"]).size()
        return float((per_user.groupby("user_id").max() / per_user.groupby("user_id").sum()).mean())

    assert top_creator_share(df) > 1.3 * top_creator_share(shuffled)


# -- the creators' SQL, and source.events_sql / items_sql ----------------------------------------------------------

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_creator_is_on_offer_while_any_of_its_items_is(reco_home):
    """creators_items.sql through items_available.sql: NULL bounds are "always", not skipped by MIN/MAX."""
    after = WINDOW_END + timedelta(days=3)
    before = WINDOW_END - timedelta(days=3)
    rows = [
        # item, creator, available_from, available_until
        ("i1", "still_selling", T0, before),  # an old item left ...
        ("i2", "still_selling", T0, None),  # ... but another is still on sale
        ("i3", "gone", T0, before),
        ("i4", "gone", T0, WINDOW_END - timedelta(days=10)),
        ("i5", "not_yet", after, None),
        ("i6", "always", None, None),  # no arrival date: on sale from the start ...
        ("i7", "always", after, after + timedelta(days=1)),  # ... whatever its other items do
        ("i8", "leaving_later", T0, before),
        ("i9", "leaving_later", T0, after),
        ("i10", None, T0, None),  # an item without a creator names no creator
    ]
    df = pd.DataFrame(rows, columns=["item_id", "creator_id", "available_from", "available_until"])
    catalogue = pa.Table.from_pandas(
        df[list(CATALOGUE_SCHEMA.names)], schema=CATALOGUE_SCHEMA, preserve_index=False
    )
    relations = source_relations(load_pipeline("creators").source)
    with open_warehouse(load_environment("local")) as wh:
        wh.write_table("demo_items", catalogue, mode="replace")
        got = wh.query_file(
            "items_available", {"window_end": WINDOW_END}, tables={"items_table": relations["items_table"]}
        ).to_pandas()
    assert dict(zip(got["item_id"], got["available"])) == {
        "still_selling": True,
        "gone": False,
        "not_yet": False,
        "always": True,
        "leaving_later": True,
    }


def test_creator_events_map_items_to_creators_and_keep_unknown_items_countable(reco_home):
    catalogue = pa.Table.from_pandas(
        pd.DataFrame({"item_id": ["i1", "i2", "i3"], "creator_id": ["c1", "c1", "c2"]}).assign(
            available_from=None, available_until=None
        )[list(CATALOGUE_SCHEMA.names)],
        schema=CATALOGUE_SCHEMA,
        preserve_index=False,
    )
    ts = WINDOW_END - timedelta(hours=1)
    events = pa.table(
        {
            "user_id": ["u1", "u1", "u2", "u3"],
            "item_id": ["i1", "i2", "i3", "unknown"],
            "event_type": ["view", "like", "view", "view"],
            "ts": [ts] * 4,
        }
    )
    relations = source_relations(load_pipeline("creators").source)
    with open_warehouse(load_environment("local")) as wh:
        wh.write_table("demo_items", catalogue, mode="replace")
        wh.write_table("demo_events", events, mode="replace")
        got = wh.query("SELECT * FROM {events_table}", tables={"events_table": relations["events_table"]})
    rows = sorted(
        zip(got["user_id"].to_pylist(), got["item_id"].to_pylist(), got["event_type"].to_pylist()), key=str
    )
    # an event on an item no catalogue row names keeps a NULL id: the aggregate counts it as dropped (null_id)
    assert rows == sorted(
        [("u1", "c1", "view"), ("u1", "c1", "like"), ("u2", "c2", "view"), ("u3", None, "view")], key=str
    )


def _config_dir(tmp_path, monkeypatch, source: str, sql: dict[str, str]) -> None:
    monkeypatch.setenv("RECO_CONFIG_DIR", str(tmp_path))
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "sql").mkdir()
    for name, text in sql.items():
        (tmp_path / "sql" / name).write_text(text)
    (tmp_path / "pipelines" / "p.yaml").write_text(f"name: p\nsource: {source}\nexport: {{table: out}}\n")


def test_a_missing_sql_file_is_an_error_naming_the_file_and_the_field(tmp_path, monkeypatch):
    _config_dir(tmp_path, monkeypatch, "{events_table: ev, events_sql: nope.sql}", {})
    with pytest.raises(ConfigError) as e:
        load_pipeline("p")
    message = str(e.value)
    assert str(tmp_path / "sql" / "nope.sql") in message and "not found" in message
    assert "source.events_sql" in message and str(tmp_path / "pipelines" / "p.yaml") in message


@pytest.mark.parametrize(
    "source, sql, expected",
    [
        ("{events_table: ev, events_sql: ../x.sql}", {}, "not a file name under"),
        (
            "{events_table: ev, events_sql: e.sql}",
            {"e.sql": "SELECT * FROM {event_table}"},
            "unknown placeholder",
        ),
        (
            "{events_table: ev, events_sql: e.sql}",
            {"e.sql": "SELECT * FROM {items_table}"},
            "items_table is not set",
        ),
        ("{events_table: ev, items_sql: i.sql}", {"i.sql": "SELECT '{' FROM {items_table}"}, "literal brace"),
    ],
)
def test_bad_source_sql_names_the_file(tmp_path, monkeypatch, source, sql, expected):
    _config_dir(tmp_path, monkeypatch, source, sql)
    with pytest.raises(ConfigError, match=expected) as e:
        load_pipeline("p")
    message = str(e.value)
    assert str(tmp_path / "pipelines" / "p.yaml") in message and str(tmp_path / "sql") in message
    assert "events_sql" in message or "items_sql" in message


def test_a_sql_file_gone_after_load_is_an_error_naming_it(tmp_path, monkeypatch):
    _config_dir(
        tmp_path,
        monkeypatch,
        "{events_table: ev, events_sql: e.sql}",
        {"e.sql": "SELECT * FROM {events_table}"},
    )
    source = load_pipeline("p").source
    (tmp_path / "sql" / "e.sql").unlink()
    with pytest.raises(ConfigError, match=f"{tmp_path / 'sql' / 'e.sql'}: SQL file not found"):
        source_relations(source)
