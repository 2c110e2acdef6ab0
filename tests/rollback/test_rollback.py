"""reco rollback / pin / unpin / show history: one commit point, bad input refused with nothing moved."""

from __future__ import annotations

import json
import os
from datetime import date, timedelta

import pytest

from batch import ledger, serving
from batch.cli import main
from batch.config import load_environment
from batch.locks import RunLock, publish_lock_url
from batch.warehouse import open_warehouse
from tests.rollback import helpers as h

D1, D2, D3, D4, D5 = (date(2026, 11, 17) + timedelta(days=i) for i in range(5))


def _cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def three_days(reco_home):
    for d in (D1, D2, D3):
        assert h.publish(d).moved
    _, _, store = h.setup()
    assert h.assert_consistent(store) == D3.isoformat()
    return store


def test_rollback_moves_publish_model_and_view_together(three_days, capsys, slack_out):
    store = three_days
    code, out, err = _cli(capsys, "rollback", "--pipeline", "demo", "--to", str(D1), "--reason", "bad model")
    assert code == 0, err
    assert json.loads(out)["serving"].startswith(str(D1))
    assert h.assert_consistent(store) == str(D1)
    assert h.partition_tags(D1) == {str(D1)}
    # the model gate and the publish check of the next date compare with the restored publish, not with D3
    assert store.reference_model("demo", D4)["dt"] == str(D1)
    assert store.previous_publish("demo", D4)["dt"] == str(D1)
    # announced, and in the ledger with who and why
    (msg,) = slack_out
    assert "rolled back" in msg["text"] and str(D1) in msg["text"]
    (entry,) = [e for e in ledger.entries(store, "demo") if e["event"] == "rollback"]
    assert entry["dt"] == str(D1) and entry["reason"] == "bad model" and entry["replaced"]["dt"] == str(D3)
    assert entry["actor"]


def test_dry_run_checks_and_moves_nothing(three_days, capsys):
    before = three_days.serving("demo")
    code, out, err = _cli(capsys, "rollback", "--pipeline", "demo", "--to", str(D2), "--dry-run")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["would_serve"].startswith(str(D2)) and plan["serving_now"].startswith(str(D3))
    assert three_days.serving("demo") == before and h.view_tags() == {str(D3)}


def test_next_run_after_a_rollback_publishes_forward_again(three_days, capsys):
    assert _cli(capsys, "rollback", "--pipeline", "demo", "--to", str(D1))[0] == 0
    outcome = h.publish(D4)
    assert outcome.moved
    assert h.assert_consistent(three_days) == str(D4)


def test_pin_holds_later_publishes_until_unpin(three_days, capsys, slack_out):
    store = three_days
    code, _, err = _cli(
        capsys, "rollback", "--pipeline", "demo", "--to", str(D2), "--pin", "--reason", "incident 42"
    )
    assert code == 0, err
    assert store.serving("demo")["pinned"]["dt"] == str(D2)
    held = h.publish(D4)  # runs still run and record ...
    assert not held.moved and held.held_by_pin
    assert h.assert_consistent(store) == str(D2)  # ... but nothing replaces the pinned publish
    assert store.pointer_record("demo", serving.PUBLISH, str(D4)) is not None
    (entry,) = [e for e in ledger.entries(store, "demo") if e["event"] == "publish" and e["dt"] == str(D4)]
    assert not entry["moved"] and "held by pin" in entry["reason"]
    code, out, err = _cli(capsys, "rollback", "--pipeline", "demo", "--unpin")
    assert code == 0 and json.loads(out)["unpinned"], err
    assert store.serving("demo")["pinned"] is None and h.assert_consistent(store) == str(D2)
    assert h.publish(D5).moved and h.assert_consistent(store) == str(D5)
    events = [e["event"] for e in ledger.entries(store, "demo")]
    assert events.count("rollback") == 1 and "unpin" in events
    code, out, err = _cli(capsys, "rollback", "--pipeline", "demo", "--unpin")
    assert code == 0 and "nothing is pinned" in err


def test_a_rollback_to_the_date_in_service_can_pin_it(three_days, capsys):
    code, _, err = _cli(capsys, "rollback", "--pipeline", "demo", "--to", str(D3), "--pin")
    assert code == 0, err
    assert [e["event"] for e in ledger.entries(three_days, "demo")][-1] == "pin"
    assert not h.publish(D4).moved


# -- bad input: a clear error and no pointer moved ---------------------------------------------------------------


def _unchanged(store, before):
    assert store.serving("demo") == before
    assert h.view_tags() == {before["publish"]["dt"]}


def test_a_date_with_no_publish(three_days, capsys):
    before = three_days.serving("demo")
    code, _, err = _cli(capsys, "rollback", "--pipeline", "demo", "--to", str(D5))
    assert code == 65 and f"no publish on {D5}" in err and str(D1) in err
    _unchanged(three_days, before)


def test_a_date_beyond_retention(reco_home, capsys):
    old = D1 - timedelta(days=40)
    h.publish(old)
    h.publish(D1)
    _, _, store = h.setup()
    before = store.serving("demo")
    code, _, err = _cli(capsys, "rollback", "--pipeline", "demo", "--to", str(old))
    assert code == 65 and "beyond the retention of 30 days" in err
    _unchanged(store, before)


def test_a_target_whose_files_are_gone_or_corrupt_is_named(three_days, capsys):
    store = three_days
    before = store.serving("demo")
    record = store.pointer_record("demo", serving.PUBLISH, str(D2))
    path = store.resolve(record["files"]["recommendations.parquet"])
    os.remove(path)
    code, _, err = _cli(capsys, "rollback", "--pipeline", "demo", "--to", str(D2))
    assert code == 65 and "cannot roll back" in err and path in err
    _unchanged(store, before)
    model = store.pointer_record("demo", serving.PROMOTED_MODEL, str(D1))
    with open(store.resolve(model["run_dir"]) + "/model.npz", "ab") as f:
        f.write(b"x")
    code, _, err = _cli(capsys, "rollback", "--pipeline", "demo", "--to", str(D1))
    assert code == 65 and "model.npz" in err
    _unchanged(store, before)


def test_rollback_while_the_pipeline_is_publishing_refuses(three_days, capsys):
    store = three_days
    before = store.serving("demo")
    with RunLock(publish_lock_url(store.root_url, "demo"), what="publish of demo").acquire():
        code, _, err = _cli(
            capsys, "rollback", "--pipeline", "demo", "--to", str(D1), "--lock-timeout", "0.2"
        )
    assert code == 75 and "already running" in err
    _unchanged(store, before)


def test_pin_on_a_pipeline_that_does_not_exist(reco_home, capsys):
    code, _, err = _cli(capsys, "rollback", "--pipeline", "nosuch", "--to", str(D1), "--pin")
    assert code == 65 and "nosuch" in err
    code, _, err = _cli(capsys, "rollback", "--pipeline", "nosuch", "--unpin")
    assert code == 65 and "nosuch" in err


def test_nothing_published_yet(reco_home, capsys):
    code, _, err = _cli(capsys, "rollback", "--pipeline", "demo", "--to", str(D1))
    assert code == 65 and "nothing is published" in err


# -- garbage collection -----------------------------------------------------------------------------------------


def test_gc_spares_rollback_targets_within_retention(reco_home):
    old = D1 - timedelta(days=40)
    h.publish(old, tag="old")
    h.publish(D1, tag="d1")
    h.publish(D2, tag="d2")
    _, _, store = h.setup()
    kept_old = store.resolve(store.pointer_record("demo", serving.PUBLISH, str(old))["run_dir"])
    kept_d1 = store.resolve(store.pointer_record("demo", serving.PUBLISH, str(D1))["run_dir"])
    # re-running a date writes a new run and collects the older run directories of that partition
    h.make_export(store, D1, 3, "d1-rerun")
    h.make_export(store, old, 3, "old-rerun")
    assert os.path.isdir(kept_d1)  # D1's publish (a rollback target within retention) is kept
    assert not os.path.exists(kept_old)  # 40 days before the latest publish: beyond retention, collected
    capsys_free = main(["rollback", "--pipeline", "demo", "--to", str(D1)])
    assert capsys_free == 0 and h.assert_consistent(store) == "d1"


# -- the ledger ---------------------------------------------------------------------------------------------------


def test_ledger_entries_in_the_store_and_the_warehouse_and_show_history(three_days, capsys):
    store = three_days
    assert _cli(capsys, "rollback", "--pipeline", "demo", "--to", str(D2), "--reason", "r1")[0] == 0
    entries = ledger.entries(store, "demo")
    assert [(e["event"], e["dt"]) for e in entries] == [
        ("publish", str(D1)),
        ("publish", str(D2)),
        ("publish", str(D3)),
        ("rollback", str(D2)),
    ]
    assert all(e["model_version"] and e["run_id"] and e["at"] and e["actor"] for e in entries)
    assert entries[0]["figures"]["rows"] == 5
    with open_warehouse(load_environment("local")) as wh:
        rows = wh.query(
            "SELECT event, dt, reason FROM {ledger} ORDER BY recorded_at",
            tables={"ledger": ledger.table_for("reco_metrics.run_metrics")},
        ).to_pylist()
    assert [r["event"] for r in rows] == ["publish", "publish", "publish", "rollback"] and rows[-1][
        "reason"
    ] == "r1"
    code, out, _ = _cli(capsys, "show", "history", "--pipeline", "demo")
    assert code == 0
    lines = out.splitlines()
    assert "rollback" in lines[-2] and "replaced " + str(D3) in lines[-2] and "r1" in lines[-2]
    assert lines[-1].startswith(f"in service: {D2}")
    code, out, _ = _cli(
        capsys, "show", "history", "--pipeline", "demo", "--since", str(D3), "--format", "json"
    )
    listed = json.loads(out)
    assert [e["dt"] for e in listed if e["event"] == "publish"] == [str(D3)]
    made_since = ["rollback"] if date.today() >= D3 else []  # a rollback belongs to the day it was made
    assert [e["event"] for e in listed if e["event"] != "publish"] == made_since


def test_a_refusal_is_in_the_ledger(small_data, make_ctx, capsys):
    from batch.checks.data import CheckResult
    from batch.errors import CheckFailedError
    from batch.execute import act_on
    from batch.graph import GRAPH
    from batch.timings import Phases

    ctx = make_ctx()
    gate = next(g for g in GRAPH.gates() if g.name == "publish check")
    with pytest.raises(CheckFailedError):
        act_on(
            gate, ctx, [CheckResult("publish", "fail", 3.0, ">= 5", "row count too low", "fail")], Phases()
        )
    (entry,) = ledger.entries(ctx.store, "demo")
    assert entry["event"] == "refused" and entry["gate"] == "publish check" and "row count" in entry["reason"]
    assert entry["figures"] == {"publish": 3.0} and entry["run_id"] == ctx.run_id


def test_a_crash_after_the_commit_loses_no_ledger_entry(reco_home, monkeypatch):
    h.publish(D1)

    def die(name):
        if name == "committed":
            raise KeyboardInterrupt

    monkeypatch.setattr(serving, "failpoint", die)
    with pytest.raises(KeyboardInterrupt):
        h.publish(D2)
    _, _, store = h.setup()
    assert h.assert_consistent(store) == str(D2)
    assert [e["dt"] for e in ledger.entries(store, "demo")] == [str(D1), str(D2)]
