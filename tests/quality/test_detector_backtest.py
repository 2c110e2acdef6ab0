"""The detectors backtested on seeded series with planted spikes, a level shift and trend (detector_backtest.py);
and the forecasting detector wired into the scan for the metrics configured to use it."""

from __future__ import annotations

import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from detector_backtest import backtest, scenarios, table  # noqa: E402

from batch.checks import anomaly, forecast  # noqa: E402
from batch.config import AnomalyConfig  # noqa: E402


@pytest.fixture(scope="module")
def result():
    res = backtest(seeds=(0,))
    print("\n" + table(res))  # the figures docs/dashboard.md quotes (pytest -s shows them)
    return res


def test_forecast_catches_every_planted_anomaly_with_few_false_alarms(result):
    f = result["forecast"]["all"]
    assert f["recall"] == 1.0, f
    assert f["precision"] >= 0.8, f


def test_forecast_takes_a_persistent_level_shift_as_the_new_normal_sooner_than_the_weekday_baseline(result):
    shift_f = result["forecast"]["level shift"]
    shift_w = result["weekday"]["level shift"]
    assert shift_f["recall"] == 1.0 and shift_w["recall"] == 1.0
    assert shift_f["fp"] < shift_w["fp"], (shift_f, shift_w)  # the weekday median needs weeks to follow


def test_windows_without_seasonality_and_static_bounds_drown_in_false_alarms(result):
    for det in ("static", "rolling"):
        assert result[det]["all"]["precision"] < 0.3, (det, result[det]["all"])
        assert result[det]["all"]["precision"] < result["forecast"]["all"]["precision"]


def test_forecast_range_needs_history_and_expects_trend_and_weekend():
    sc = scenarios(0)[0]  # trend + season
    hist = sc.history()
    day = 112  # a Monday after 16 weeks; no planted anomaly on it
    today, value = hist[day]
    assert forecast.forecast_range(hist[:day][-10:], today) is None  # too little history
    rng = forecast.forecast_range(hist[:day], today)
    assert rng.contains(value)
    saturday = today + timedelta(days=5)
    rng_sat = forecast.forecast_range(hist[:day], saturday)
    assert rng_sat.center < 0.85 * rng.center  # the weekend dip is forecast, five days ahead
    assert not rng.contains(value * 0.6) and not rng.contains(value * 1.4)


def test_flat_history_gives_the_relative_band():
    start = date(2026, 1, 1)
    flat = [(start + timedelta(days=i), 50.0) for i in range(40)]
    rng = forecast.forecast_range(flat, start + timedelta(days=40))
    assert rng.contains(51.0) and not rng.contains(40.0)


def test_scan_uses_the_forecast_for_configured_metrics_only():
    sc = scenarios(0)[0]
    hist = sc.history()
    day = 117  # a planted +45% spike
    today, value = hist[day]
    cfg = AnomalyConfig(forecast={"metrics": ["aggregate.events_session_day"]})
    found = anomaly.detect("aggregate.events_session_day", hist[: day + 1], today, value, cfg)
    assert found is not None and found.detector == forecast.DETECTOR
    other = anomaly.detect("aggregate.users", hist[: day + 1], today, value, cfg)
    assert other is not None and other.detector != forecast.DETECTOR


def test_chart_band_uses_only_earlier_days_and_marks_the_spikes():
    sc = scenarios(0)[0]
    band = forecast.band(sc.history())
    flagged = {
        (d - sc.history()[0][0]).days for d, v in sc.history() if d in band and not band[d].contains(v)
    }
    planted = {d for d in sc.positives}
    assert planted <= flagged
    assert len(flagged - planted) <= 3, sorted(flagged - planted)
    assert np.isfinite([b.low for b in band.values()]).all()
