"""Backfill: date ranges to Digdag's fromTime + count (Asia/Tokyo, month ends), refusals, dry run, local order."""

from __future__ import annotations

from datetime import date, datetime
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from batch.digdag.backfill import BackfillError, local_backfill, plan_dates, plan_server_backfill
from batch.digdag.workflow import parse_schedule

TOKYO = ZoneInfo("Asia/Tokyo")
DAILY = parse_schedule({"daily>": "04:00:00"}, file="demo.dig")
FAR = datetime(2030, 1, 1, tzinfo=TOKYO)


def test_from_time_is_the_session_start_in_tokyo_not_utc():
    plan = plan_server_backfill(DAILY, "Asia/Tokyo", date(2026, 11, 1), date(2026, 11, 1), FAR)
    assert plan.from_time.isoformat() == "2026-11-01T00:00:00+09:00"
    assert plan.from_time.astimezone(ZoneInfo("UTC")).isoformat() == "2026-10-31T15:00:00+00:00"
    assert plan.count == 1


@pytest.mark.parametrize(
    "d1, d2, count",
    [
        (date(2026, 11, 28), date(2026, 12, 2), 5),  # across a month end
        (date(2027, 1, 30), date(2027, 3, 1), 31),  # February of a common year: 2 + 28 + 1
        (date(2028, 2, 27), date(2028, 3, 1), 4),  # leap year: 27, 28, 29, 1
        (date(2026, 12, 31), date(2027, 1, 1), 2),  # year end
    ],
)
def test_count_covers_every_day_inclusive(d1, d2, count):
    plan = plan_server_backfill(DAILY, "Asia/Tokyo", d1, d2, FAR)
    assert plan.count == count
    assert [s.date() for s in plan.sessions] == plan_dates(d1, d2)
    assert plan.sessions[-1] == datetime.combine(d2, datetime.min.time(), tzinfo=TOKYO)


def test_refuses_ranges_reaching_the_next_schedule_time():
    nst = datetime(2026, 11, 26, tzinfo=TOKYO)
    assert plan_server_backfill(DAILY, "Asia/Tokyo", date(2026, 11, 20), date(2026, 11, 25), nst).count == 6
    with pytest.raises(BackfillError) as e:
        plan_server_backfill(DAILY, "Asia/Tokyo", date(2026, 11, 20), date(2026, 11, 26), nst)
    assert "next session 2026-11-26T00:00:00+09:00" in str(e.value)
    assert "--to 2026-11-25" in e.value.hint


def test_next_schedule_time_in_utc_is_compared_as_an_instant():
    nst_utc = datetime.fromisoformat("2026-11-25T15:00:00+00:00")  # = 2026-11-26 00:00 JST
    with pytest.raises(BackfillError):
        plan_server_backfill(DAILY, "Asia/Tokyo", date(2026, 11, 26), date(2026, 11, 26), nst_utc)


def test_refuses_more_than_digdags_limit_and_reversed_ranges():
    assert plan_server_backfill(DAILY, "Asia/Tokyo", date(2026, 1, 1), date(2026, 4, 10), FAR).count == 100
    with pytest.raises(BackfillError, match="101 sessions; Digdag backfills at most 100") as e:
        plan_server_backfill(DAILY, "Asia/Tokyo", date(2026, 1, 1), date(2026, 4, 11), FAR)
    assert "--to 2026-04-10" in e.value.hint
    with pytest.raises(BackfillError, match="after --to"):
        plan_server_backfill(DAILY, "Asia/Tokyo", date(2026, 2, 1), date(2026, 1, 1), FAR)


def test_hourly_schedule_counts_every_hour_of_the_days():
    hourly = parse_schedule({"hourly>": "10:00"}, file="h.dig")
    plan = plan_server_backfill(hourly, "Asia/Tokyo", date(2026, 11, 1), date(2026, 11, 2), FAR)
    assert plan.count == 48 and plan.from_time.isoformat() == "2026-11-01T00:00:00+09:00"


def _server(digdag_server, monkeypatch):
    monkeypatch.setenv("GCP_PROJECT", "test-project")
    digdag_server.add_workflow(
        schedule={"daily>": "04:00:00"}, next_schedule_time="2026-11-26T00:00:00+09:00"
    )
    return ["--env", "prod", "--endpoint", digdag_server.url]


def test_cli_dry_run_shows_sessions_and_starts_nothing(digdag_server, monkeypatch, capsys):
    from batch.cli import main

    args = _server(digdag_server, monkeypatch)
    assert main(["backfill", "--pipeline", "demo", "--from", "2026-11-29", "--to", "2026-11-25", *args]) == 65
    assert (
        main(
            [
                "backfill",
                "--pipeline",
                "demo",
                "--from",
                "2026-10-30",
                "--to",
                "2026-11-02",
                "--dry-run",
                *args,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "4 session(s) from 2026-10-30T00:00:00+09:00" in out and "[dry run]" in out
    assert "session 2026-10-31T00:00:00+09:00" in out and "nothing started" in out
    body = [r for r in digdag_server.requests if r[1].endswith("/backfill")][-1][3]
    assert body["dryRun"] is True and body["count"] == 4 and body["fromTime"] == "2026-10-30T00:00:00+09:00"
    assert digdag_server.attempts == {}


def test_cli_backfill_starts_then_same_name_conflicts(digdag_server, monkeypatch, capsys):
    from batch.cli import main

    args = _server(digdag_server, monkeypatch)
    cmd = [
        "backfill",
        "--pipeline",
        "demo",
        "--from",
        "2026-11-20",
        "--to",
        "2026-11-22",
        "--name",
        "bf1",
        *args,
    ]
    assert main(cmd) == 0
    assert len(digdag_server.attempts) == 3
    assert main(cmd) != 0
    err = capsys.readouterr().err
    assert "already has an attempt named 'bf1' (409)" in err and "another --name" in err
    too_far = ["backfill", "--pipeline", "demo", "--from", "2026-11-20", "--to", "2026-11-26", *args]
    assert main(too_far) == 65
    assert (
        len([r for r in digdag_server.requests if r[1].endswith("/backfill")]) == 2
    )  # refused before asking


def test_local_backfill_runs_oldest_first_and_stops_at_a_failure(tmp_path):
    seen = []

    def fake_run(workflow, d, params):
        seen.append((d, params["env"]))
        return SimpleNamespace(success=d != date(2026, 11, 3), attempt_id=str(len(seen)), failed_task="+x")

    results = local_backfill(
        tmp_path / "demo.dig", [date(2026, 11, 4), date(2026, 11, 2), date(2026, 11, 3)], runner=fake_run
    )
    assert seen == [(date(2026, 11, 2), "local"), (date(2026, 11, 3), "local")]
    assert [r.success for _, r in results] == [True, False]


def test_local_backfill_cli_dry_run(reco_home, capsys):
    from batch.cli import main

    assert (
        main(["backfill", "--pipeline", "demo", "--from", "2026-11-30", "--to", "2026-12-01", "--dry-run"])
        == 0
    )
    out = capsys.readouterr().out
    assert out.index("--session-date 2026-11-30") < out.index("--session-date 2026-12-01")
    assert main(["backfill", "--pipeline", "nosuch", "--from", "2026-11-30", "--to", "2026-12-01"]) == 65
