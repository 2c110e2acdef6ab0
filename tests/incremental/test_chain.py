"""Incremental chains through the real steps: a full day then an incremental day, and every full-fit trigger."""

import os
import shutil
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from batch import datasets, incremental
from batch.config import load_environment, load_pipeline
from batch.context import StepContext
from batch.data import SyntheticSpec, generate, write_source
from batch.execute import run_step
from batch.graph import GRAPH
from batch.report import build_html
from batch.storage import new_run_id
from batch.summary import build_summary
from batch.warehouse import open_warehouse

D = date(2026, 11, 21)
INC = {"incremental.enabled": "true", "incremental.quiet_users": "carry"}
# the chain's runs: some users below min_user_events get fallback-only lists (source "popular")
RUN = {**INC, "aggregate.min_user_events": "4"}


def _recs(ctx, dt):
    c = ctx.store.committed("demo", "export", dt, step="export")
    df = c.read_parquet("recommendations.parquet").to_pandas().sort_values(["user_id", "rank"])
    return df.groupby("user_id")["item_id"].agg(list).to_dict()


def _changed_users(ctx, dt):
    """Users with events the parent run of ``dt`` did not see (a day of theirs computed after it)."""
    changes = ctx.store.committed("demo", "interactions", dt, step="aggregate").read_parquet(
        "user_changes.parquet"
    )
    parent_run = os.path.basename(ctx.store.reference_model("demo", dt)["run_dir"]).removeprefix("run=")
    return {
        u
        for u, r in zip(changes["user_id"].to_pylist(), changes["changed_run"].to_pylist(), strict=True)
        if r > parent_run
    }


def _model_meta(ctx, dt):
    return ctx.store.committed("demo", "model", dt, step="train").metadata


@pytest.fixture(scope="module")
def chain_home(tmp_path_factory):
    """Small demo data; D-1 (the first run: full) and D (incremental), both published. Built once per module."""
    home = tmp_path_factory.mktemp("chain") / "var"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECO_HOME", str(home))
        mp.setenv("RECO_LOG_FORMAT", "text")
        mp.delenv("SLACK_WEBHOOK_URL", raising=False)
        pipeline = load_pipeline("demo")
        events, items = generate(
            SyntheticSpec(users=600, items=300, days=35, end_date=D, seed=3, events_per_user=25)
        )
        with open_warehouse(load_environment("local")) as wh:
            write_source(
                wh, pipeline.source.events_table, pipeline.source.items_table, events, items, append=False
            )
        results = [run_dates(dt) for dt in (D - timedelta(days=1), D)]
    return home, results


def run_dates(dt, overrides=RUN):
    run_id = new_run_id()
    base = {"model.params.iterations": "3", "model.params.factors": "16", **overrides}
    pipeline = load_pipeline("demo", "local", base)
    env = load_environment("local")
    results = {}
    for spec in GRAPH.enabled_steps(pipeline):
        for i in range(pipeline.candidates.shard_count) if spec.sharded else [0]:
            ctx = StepContext(
                pipeline=pipeline,
                env=env,
                session_date=dt,
                shard_index=i,
                shard_count=pipeline.candidates.shard_count,
                overrides=base,
                show_progress=False,
                run_id=run_id,
            )
            results[spec.name] = run_step(spec, ctx)
    return results


@pytest.fixture
def two_days(chain_home, reco_home):
    """A private copy of the module's chain (publish records hold absolute paths: rewritten to the copy)."""
    home, results = chain_home
    shutil.copytree(home, reco_home)
    for path in reco_home.rglob("*.json"):
        text = path.read_text()
        if str(home) in text:
            path.write_text(text.replace(str(home), str(reco_home)))
    return results


def test_a_full_day_then_an_incremental_day(two_days, make_ctx):
    first, second = two_days
    assert first["publish"]["published"] and second["publish"]["published"]
    ctx = make_ctx(D, INC)
    day1 = _model_meta(ctx, D - timedelta(days=1))["incremental"]
    day2 = _model_meta(ctx, D)["incremental"]
    assert day1["kind"] == "full" and day1["reason"].startswith("first run")
    assert day2["kind"] == "incremental"
    assert day2["reason"].endswith("1 + 2 iterations")  # incremental.iterations, incremental.refit_iterations
    assert day2["parent"] == {
        "model_version": _model_meta(ctx, D - timedelta(days=1))["model_version"],
        "dt": (D - timedelta(days=1)).isoformat(),
    }
    assert day2["last_full_dt"] == (D - timedelta(days=1)).isoformat()
    assert [link["kind"] for link in day2["chain"]] == ["full", "incremental"]
    guard = day2["drift_guard"]
    assert guard["triggered"] is False and guard["warm_start"]["users_matched"] > 0
    # the summary shows the chain; the promoted model is today's
    summary = build_summary(ctx.store, "demo", D, ctx.pipeline.candidates.shard_count)
    assert summary["incremental"]["kind"] == "incremental" and len(summary["incremental"]["chain"]) == 2
    assert ctx.store.promoted_model("demo")["dt"] == D.isoformat()
    # and the run report shows it: kind and reason, the parent, the links newest first, how lists were made
    html = build_html(ctx.pipeline, ctx.env, D)
    section = html[html.index("<h2>Incremental chain</h2>") :]
    section = section[: section.index("<h2>", 4)]
    assert "incremental: warm start from" in section
    assert day2["parent"]["model_version"] in section
    table = section[section.index("<table") :]
    assert table.index(_model_meta(ctx, D)["model_version"]) < table.index(day2["parent"]["model_version"])
    assert "scored against every item" in section and "passed:" in section
    # candidates: the full day recomputed everyone; the incremental day only users with new events
    full_counts = build_summary(ctx.store, "demo", D - timedelta(days=1), 2)["steps"]["candidates"]["counts"]
    assert full_counts["users_carried"] == 0 and full_counts["users_recomputed"] == full_counts["users"]
    counts = summary["steps"]["candidates"]["counts"]
    assert counts["users_carried"] > 0 and counts["users_recomputed"] > 0
    assert counts["users_carried"] + counts["users_recomputed"] == counts["users"]
    # a carried user's list is the parent publish's (no item of theirs became unavailable)
    today, before = _recs(ctx, D), _recs(ctx, D - timedelta(days=1))
    changes = ctx.store.committed("demo", "interactions", D, step="aggregate").read_parquet(
        "user_changes.parquet"
    )
    last_run = dict(zip(changes["user_id"].to_pylist(), changes["changed_run"].to_pylist(), strict=True))
    parent_run = os.path.basename(ctx.store.reference_model("demo", D)["run_dir"]).removeprefix("run=")
    quiet = sorted(u for u, r in last_run.items() if r <= parent_run)[:20]
    assert quiet
    for u in quiet:
        assert today[u] == before[u]


def test_full_fit_triggers(two_days, make_ctx):
    nxt = D + timedelta(days=1)
    # schedule: the last full fit was D-1
    plan = incremental.plan_fit(make_ctx(nxt, {**INC, "incremental.full_every_days": "2"}))
    assert plan.kind == "full" and plan.reason.startswith("scheduled")
    assert incremental.plan_fit(make_ctx(nxt, {**INC, "incremental.full_every_days": "3"})).incremental
    # backfill of an earlier date while a later model is in service
    plan = incremental.plan_fit(make_ctx(D - timedelta(days=3), INC))
    assert plan.kind == "full" and plan.reason.startswith("backfill")
    # parent older than the window
    plan = incremental.plan_fit(make_ctx(D + timedelta(days=5), {**INC, "aggregate.lookback_days": "4"}))
    assert plan.kind == "full" and "older than the 4-day window" in plan.reason
    # off
    assert incremental.plan_fit(make_ctx(nxt)).reason.startswith("incremental runs are off")


def test_a_refused_model_restarts_the_chain(two_days, make_ctx):
    ctx = make_ctx(D, INC)
    parent = ctx.store.promoted_model("demo")
    run_id = os.path.basename(parent["run_dir"]).removeprefix("run=")

    def refuse(dt, source_run_id):
        with ctx.store.writer("demo", "quality_model", dt) as w:
            w.write_json("gate.json", {})
            w.metadata.update({"passed": False, "failures": ["overlap"], "source_run_id": source_run_id})

    # a model of a later date than the parent was refused: no chaining past it
    refuse(D + timedelta(days=1), "some-run")
    plan = incremental.plan_fit(make_ctx(D + timedelta(days=2), INC))
    assert plan.kind == "full" and f"the model of {D + timedelta(days=1)} was refused" in plan.reason
    # the parent itself refused (e.g. judged again after promotion)
    refuse(D, run_id)
    plan = incremental.plan_fit(make_ctx(D + timedelta(days=1), INC))
    assert plan.kind == "full" and plan.reason.startswith("the parent model was refused")


def test_a_missing_or_corrupt_parent_is_a_full_fit_with_a_warning(two_days, make_ctx):
    ctx = make_ctx(D + timedelta(days=1), INC)
    parent = ctx.store.promoted_model("demo")
    path = os.path.join(ctx.store.resolve(parent["run_dir"]), "model.npz")
    with open(path, "r+b") as f:
        f.write(b"garbage")
    plan = incremental.plan_fit(ctx)
    assert plan.kind == "full" and "cannot be read" in plan.reason and plan.warnings
    os.remove(path)
    plan = incremental.plan_fit(ctx)
    assert plan.kind == "full" and "cannot be read" in plan.reason


def test_drift_guard_refits_fully_in_the_same_run(two_days, make_ctx):
    nxt = D + timedelta(days=1)
    # the data end on D: run the next date on the same events with a floor no warm start can reach
    overrides = {
        **INC,
        "incremental.drift.min_overlap": "1.0",
        "incremental.drift.min_users": "1",
        "checks.data.freshness.enabled": "false",
        "checks.data.volume.enabled": "false",
    }
    ctx = make_ctx(nxt, overrides)
    run_step("aggregate", ctx)
    run_step("train", ctx)
    meta = _model_meta(ctx, nxt)["incremental"]
    assert meta["kind"] == "full" and meta["reason"].startswith("drift guard")
    assert meta["drift_guard"]["triggered"] and meta["drift_guard"]["overlap"]["mean"] < 1.0
    verdict = ctx.store.committed("demo", "quality_model", nxt, step="train").read_json("gate.json")
    warn = [r for r in verdict["results"] if r["name"] == "incremental"]
    assert warn and warn[0]["status"] == "warn" and "drift guard" in warn[0]["message"]


def test_carried_lists_lose_unavailable_items_and_are_refilled(two_days, make_ctx):
    ctx = make_ctx(D, INC)
    c = ctx.store.committed("demo", "export", D, step="export")
    recs = c.read_parquet("recommendations.parquet").to_pandas()
    n = ctx.pipeline.candidates.n
    popular_rows = recs[recs["source"] == "popular"]
    personal_rows = recs[recs["source"] == "personal"]
    # an item some users got only from the fallback, and an item in someone's personal list
    gone_popular = popular_rows["item_id"].value_counts().index[0]
    gone_personal = personal_rows.loc[personal_rows["item_id"] != gone_popular, "item_id"].iloc[0]
    holders = set(personal_rows.loc[personal_rows["item_id"] == gone_personal, "user_id"])
    fallback_holders = (
        set(popular_rows.loc[popular_rows["item_id"] == gone_popular, "user_id"])
        - holders
        - set(personal_rows.loc[personal_rows["item_id"] == gone_popular, "user_id"])
    )
    # both leave sale before the next day
    with open_warehouse(load_environment("local")) as wh:
        wh.execute(
            "UPDATE demo_items SET available_until = TIMESTAMPTZ '2026-11-21 15:00:00+00' WHERE item_id IN (?, ?)",
            [gone_popular, gone_personal],
        )
    nxt = D + timedelta(days=1)
    # the data end early on D+1 (Tokyo time): a short day, so freshness and volume checks are off
    run_dates(nxt, {**RUN, "checks.data.freshness.enabled": "false", "checks.data.volume.enabled": "false"})
    before, after = _recs(ctx, D), _recs(ctx, nxt)
    assert not {gone_popular, gone_personal} & {i for items in after.values() for i in items}
    # users with events the parent run did not see
    changed = _changed_users(ctx, nxt)
    assert changed
    items = ctx.store.committed("demo", "model", nxt, step="train").read_parquet("items.parquet").to_pandas()
    on_sale = set(items.loc[items["available"], "item_id"])
    stale = set(personal_rows.loc[~personal_rows["item_id"].isin(on_sale), "user_id"])
    assert holders <= stale
    # a carried user keeps the parent's order without the items no longer on sale (the withdrawn one, and any the
    # catalogue retired that day), refilled to N at the tail
    carried_user = sorted(fallback_holders - stale - changed)[0]
    kept = [i for i in before[carried_user] if i in on_sale]
    assert gone_popular in before[carried_user] and gone_popular not in kept
    assert after[carried_user][: len(kept)] == kept and len(after[carried_user]) == n
    counts = build_summary(ctx.store, "demo", nxt, 2)["steps"]["candidates"]["counts"]
    # recomputed: users with new events, and users whose personal list held an item no longer on sale
    assert counts["users_recomputed"] == len((stale | changed) & set(after))
    assert counts["users_carried"] == counts["users"] - counts["users_recomputed"] > 0


def test_with_quiet_users_rescore_an_incremental_day_rescores_every_user(two_days, make_ctx):
    ctx = make_ctx(D, {"incremental.enabled": "true", "incremental.quiet_users": "rescore"})
    assert _model_meta(ctx, D)["incremental"]["kind"] == "incremental"
    result = run_step(GRAPH.step("candidates"), ctx)
    counts = result["counts"]
    assert counts["users_carried"] == counts["users_refreshed"] == 0
    assert counts["users_recomputed"] == counts["users"] > 0
    marker = ctx.store.committed("demo", "candidates", D, step="candidates", shard=ctx.shard)
    assert "quiet_users is rescore" in marker.metadata["carried"]


def _shard_lists(ctx):
    c = ctx.store.committed("demo", "candidates", D, step="candidates", shard=ctx.shard)
    return c.read_parquet("part.parquet").to_pandas().sort_values(["user_id", "rank"])


@pytest.mark.parametrize("refresh_items", [0, 3, 1_000_000])
def test_refreshed_users_get_todays_ranking_of_their_parent_list_and_the_hot_items(
    two_days, make_ctx, refresh_items
):
    carry = make_ctx(D, INC)
    carried = run_step(GRAPH.step("candidates"), carry)["counts"]
    ctx = make_ctx(
        D,
        {**INC, "incremental.quiet_users": "refresh", "incremental.refresh_items": str(refresh_items)},
    )
    assert ctx.pipeline.incremental.quiet_users == "refresh"  # the default
    counts = run_step(GRAPH.step("candidates"), ctx)["counts"]
    # the same users are quiet; they are refreshed instead of carried
    assert counts["users_refreshed"] == carried["users_carried"] > 0 and counts["users_carried"] == 0
    assert counts["users_recomputed"] == carried["users_recomputed"]
    marker = ctx.store.committed("demo", "candidates", D, step="candidates", shard=ctx.shard)
    assert marker.metadata["quiet_users"] == "refresh"

    # the expectation, from the spec: today's model ranks the parent publish's list plus the hot items (new to
    # the model: no events before the holdout day; and the refresh_items items with most events on it)
    model_art = datasets.model(ctx)
    model = model_art.load()
    items = model_art.items()
    users = model_art.users()
    inter = ctx.store.committed("demo", "interactions", D, step="aggregate").read_parquet(
        "interactions.parquet"
    )
    inter = inter.to_pandas()
    per_item = inter.groupby("item_idx")[["weight_train", "holdout_events"]].sum()
    recent = per_item[per_item["holdout_events"] > 0]
    new = set(recent.index[recent["weight_train"] == 0])
    ranked = recent.reset_index().sort_values(["holdout_events", "item_idx"], ascending=[False, True])
    hot = new | set(ranked["item_idx"].head(refresh_items))
    assert len(hot) <= len(new) + refresh_items
    item_of = dict(zip(items["item_id"], items["item_idx"], strict=True))
    on_sale = set(items.loc[items["available"], "item_idx"])
    seen = inter.groupby("user_idx")["item_idx"].agg(set).to_dict()
    user_idx = dict(zip(users["user_id"], users["user_idx"], strict=True))
    before = _recs(ctx, D - timedelta(days=1))
    after = _shard_lists(ctx)
    # the quiet users: no events the parent run did not see, no personal item of theirs gone from sale
    changed = _changed_users(ctx, D)
    parent_rows = ctx.store.committed("demo", "export", D - timedelta(days=1), step="export")
    parent_rows = parent_rows.read_parquet("recommendations.parquet").to_pandas()
    personal = parent_rows[parent_rows["source"] == "personal"]
    stale = set(personal.loc[~personal["item_id"].map(item_of).isin(on_sale), "user_id"])
    refreshed = sorted(set(after["user_id"]) & set(before) - changed - stale)
    assert len(refreshed) == counts["users_refreshed"]
    n = ctx.pipeline.candidates.n
    checked = 0
    for user_id in refreshed:
        got = after[after["user_id"] == user_id]
        if (got["source"] == "personal").sum() == 0 or user_id not in user_idx:
            continue
        u = user_idx[user_id]
        pool = ({item_of[i] for i in before[user_id] if i in item_of} | hot) & on_sale
        pool -= seen.get(u, set())
        if not pool:
            continue
        pool = np.array(sorted(pool))
        scores = model.item_factors[pool] @ model.user_factors[u]
        best = pool[np.argsort(-scores, kind="stable")][:n]
        personal = got.loc[got["source"] == "personal", "item_id"].map(item_of).to_numpy()
        np.testing.assert_array_equal(personal, best[: len(personal)])
        np.testing.assert_allclose(
            got.loc[got["source"] == "personal", "score"],
            np.sort(scores)[::-1][: len(personal)],
            rtol=1e-4,
            atol=1e-6,
        )
        checked += 1
    assert checked >= 10


def test_parent_lists_come_from_the_parent_shard_or_else_the_publish(two_days, make_ctx):
    ctx = make_ctx(D, INC)
    from_shard = run_step(GRAPH.step("candidates"), ctx)["counts"]
    lists = _shard_lists(ctx).reset_index(drop=True)
    # without the parent date's candidates partitions the same lists come from the publish's file
    parent_shards = ctx.store.committed(
        "demo", "candidates", D - timedelta(days=1), step="candidates", shard=ctx.shard
    )
    shutil.rmtree(os.path.dirname(parent_shards.run_dir.rstrip("/")))
    from_publish = run_step(GRAPH.step("candidates"), make_ctx(D, INC))["counts"]
    assert from_publish == from_shard and from_shard["users_carried"] > 0
    pd.testing.assert_frame_equal(_shard_lists(ctx).reset_index(drop=True), lists)
