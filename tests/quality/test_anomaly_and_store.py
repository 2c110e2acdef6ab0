"""Anomaly detectors on series with trend and weekly seasonality; the metric store; report and CLI."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from batch.checks import anomaly
from batch.config import AnomalyConfig, load_environment

TODAY = date(2026, 11, 21)  # a Saturday


def seasonal_series(days=70, end=TODAY, seed=0):
    """Level 1000, +4/day trend, weekends 30% lower, 2% noise; ends the day before ``end``."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(days, 0, -1):
        d = end - timedelta(days=i)
        v = (1000 + 4 * (days - i)) * (0.7 if d.weekday() >= 5 else 1.0)
        out.append((d, v * (1 + rng.normal(0, 0.02))))
    return out


def expected_value(d, days=70, end=TODAY):
    return (1000 + 4 * (days + (d - end).days)) * (0.7 if d.weekday() >= 5 else 1.0)


CFG = AnomalyConfig()


def test_weekday_baseline_expects_the_weekend_dip_and_catches_a_real_drop():
    hist = seasonal_series()
    assert TODAY.weekday() == 5
    dip = expected_value(TODAY)  # a normal Saturday: 30% below the weekdays
    assert anomaly.detect("aggregate.events_session_day", hist, TODAY, dip, CFG) is None
    # the same value on a Wednesday is a real drop
    wed = TODAY - timedelta(days=3)
    hist_wed = [(d, v) for d, v in seasonal_series(end=wed)]
    assert anomaly.detect("x.y", hist_wed, wed, expected_value(wed, end=wed), CFG) is None
    found = anomaly.detect("x.y", hist_wed, wed, 0.7 * expected_value(wed, end=wed), CFG)
    assert found and found.detector == "weekday baseline" and found.low > found.value
    assert "expected" in found.message
    # and a Saturday that drops far below the usual dip is caught too
    assert anomaly.detect("x.y", hist, TODAY, 0.5 * dip, CFG) is not None


def test_a_plain_rolling_window_would_flag_the_weekend_or_miss_drops_the_weekday_baseline_does_not():
    hist = seasonal_series()
    rng = anomaly.weekday_range(hist, TODAY, threshold=4, min_history=7)
    assert rng.low <= expected_value(TODAY) <= rng.high
    width_weekday = rng.high - rng.low
    roll = anomaly.rolling_range(hist, TODAY, threshold=4, min_history=7)
    assert roll.high - roll.low > 2 * width_weekday  # the seasonal swing inflates a plain window's MAD


def test_rolling_median_mad_follows_a_trend():
    start = TODAY - timedelta(days=30)
    rng = np.random.default_rng(1)
    hist = [(start + timedelta(days=i), 500 + 10 * i + rng.normal(0, 5)) for i in range(30)]
    r = anomaly.rolling_range(hist, TODAY, window=28, threshold=4, min_history=7)
    assert r.contains(800)  # where the trend is today
    assert not r.contains(500)  # the old level would be a drop
    assert anomaly.rolling_range(hist[:3], TODAY, min_history=7) is None  # too little history


def test_static_bounds_and_flat_history():
    cfg = AnomalyConfig(static={"export.user_coverage": {"min": 0.95}})
    assert anomaly.detect("export.user_coverage", [], TODAY, 0.9, cfg).detector == "static"
    assert anomaly.detect("export.user_coverage", [], TODAY, 0.99, cfg) is None
    flat = [(TODAY - timedelta(days=i), 100.0) for i in range(1, 20)]
    assert anomaly.detect("a.b", flat, TODAY, 103.0, CFG) is None  # within min_relative_deviation
    assert anomaly.detect("a.b", flat, TODAY, 80.0, CFG) is not None


def test_metric_store_rerun_does_not_double_count(reco_home):
    from batch import metrics_store as ms

    env = load_environment("local")
    table = CFG.table
    ms.record(env, table, "demo", TODAY, "aggregate", [("users", None, 5), ("dropped", {"reason": "dup"}, 2)])
    ms.record(env, table, "demo", TODAY, "aggregate", [("users", None, 6)])
    ms.record(env, table, "demo", TODAY, "train", [("ndcg@10", None, 0.3)])
    df = ms.history(env, table, "demo", since=TODAY, until=TODAY)
    assert sorted(zip(df["step"], df["metric"], df["value"], strict=True)) == [
        ("aggregate", "users", 6.0),
        ("train", "ndcg@10", 0.3),
    ]
    assert ms.history(env, table, "other", since=TODAY, until=TODAY).empty


def test_metric_store_waits_for_another_writer(reco_home):
    """DuckDB allows one writer process per file: a held lock is waited for, then the write goes through."""
    import subprocess
    import sys
    import time

    from batch import metrics_store as ms

    env = load_environment("local")
    path = env.resolved_duckdb_path()
    ms.record(env, CFG.table, "demo", TODAY, "aggregate", [("users", None, 1)])
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb,time; c=duckdb.connect({path!r}); print('held', flush=True); time.sleep(1.5)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        t = time.monotonic()
        ms.record(env, CFG.table, "demo", TODAY, "export", [("rows", None, 10)])
        assert time.monotonic() - t > 0.3
    finally:
        holder.wait()
    df = ms.history(env, CFG.table, "demo", since=TODAY, until=TODAY)
    assert set(df["step"]) == {"aggregate", "export"}


def test_every_step_records_metrics_and_an_anomaly_alerts_with_the_report(
    small_data, make_ctx, run_pipeline, alerts, faults
):
    from batch import metrics_store as ms

    env = load_environment("local")
    # 21 previous days on which the window had about 5000 users: today's ~600 is an anomaly (warn only)
    for i in range(1, 22):
        ms.record(
            env,
            CFG.table,
            "demo",
            TODAY - timedelta(days=i),
            "aggregate",
            [("users", None, 5000 + 10 * (i % 3))],
        )
    result = run_pipeline()["publish"]
    assert result["published"]
    df = ms.history(env, CFG.table, "demo", since=TODAY, until=TODAY)
    assert {"aggregate", "train", "candidates", "related", "export"} <= set(df["step"])
    assert {"events_session_day", "invalid_ratio", "ndcg@10", "rows", "catalog_coverage"} <= set(df["metric"])
    warns = [a for a in alerts if "anomal" in a["text"]]
    assert len(warns) == 1
    text = faults.alert_text(warns[0])
    assert "aggregate.users" in text and "expected" in text and "index.html" in text
    assert "stopped" not in text


def test_anomaly_severity_fail_stops_at_the_step(small_data, make_ctx, run_pipeline, alerts):
    from batch import metrics_store as ms
    from batch.errors import CheckFailedError

    env = load_environment("local")
    for i in range(1, 22):
        ms.record(env, CFG.table, "demo", TODAY - timedelta(days=i), "aggregate", [("users", None, 5000.0)])
    with pytest.raises(CheckFailedError, match="metric anomalies"):
        run_pipeline(overrides={"checks.anomaly.severity": "fail"})
    assert not make_ctx().store.exists("demo", "model", TODAY)


def test_report_is_self_contained_and_cli(small_data, make_ctx, run_pipeline, capsys, tmp_path):
    from batch.cli import main

    run_pipeline(session_date=TODAY - timedelta(days=1))
    run_pipeline()
    out = tmp_path / "r.html"
    assert main(["report", "--pipeline", "demo", "--date", str(TODAY), "--out", str(out)]) == 0
    page = out.read_text()
    for section in (
        "Quality gates",
        "Metrics of the day",
        "History",
        "Score distribution",
        "Popularity and coverage",
        "A few users",
    ):
        assert section in page
    assert page.count("data:image/png;base64,") >= 4
    lowered = page.lower()
    assert "<script" not in lowered and "http://" not in lowered and "https://" not in lowered
    assert "<link" not in lowered
    capsys.readouterr()
    assert main(["show", "published", "--pipeline", "demo"]) == 0
    shown = capsys.readouterr().out
    latest = make_ctx().store.latest("demo")
    assert f"published date: {TODAY}" in shown and latest["model_version"] in shown
    assert main(["metrics", "--pipeline", "demo", "--step", "train", "--metric", "ndcg@10"]) == 0
    assert "ndcg@10" in capsys.readouterr().out
    assert main(["report", "--pipeline", "demo", "--date", "2020-01-01"]) == 65


def test_show_published_before_anything_is_published(reco_home, capsys):
    from batch.cli import main

    assert main(["show", "published", "--pipeline", "demo"]) == 65  # bad input with the next command, not 1
    err = capsys.readouterr().err
    assert "nothing published yet" in err and "reco run --pipeline demo" in err
