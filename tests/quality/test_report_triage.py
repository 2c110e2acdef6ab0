"""The run report reads top-down for triage: status line, charts (with the detector's band), then tables."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from batch import metrics_store, report
from batch.checks import anomaly
from batch.config import load_pipeline
from batch.errors import CheckFailedError


@pytest.fixture
def seeded_history(small_data, make_ctx):
    """20 earlier days of the watched metrics with 1% noise, as the steps would have recorded them."""
    ctx = make_ctx()
    cfg = ctx.pipeline.checks.anomaly
    rng = np.random.default_rng(1)
    for back in range(20, 0, -1):
        d = ctx.session_date - timedelta(days=back)
        metrics_store.record(
            ctx.env,
            cfg.table,
            "demo",
            d,
            "aggregate",
            [("users", None, 600 * (1 + rng.normal(0, 0.01))), ("items", None, 300.0)],
        )
    return ctx


def _body(page: str) -> str:
    return page.split("<body>", 1)[1]


def test_a_published_day_reads_status_then_charts_then_tables(seeded_history, run_pipeline):
    ctx = seeded_history
    run_pipeline()
    page = report.build_html(ctx.pipeline, ctx.env, ctx.session_date)
    body = _body(page)
    assert body.startswith('<div id="status" class="status ok"><b>PUBLISHED: demo 2026-11-21 is live</b>')
    assert "Next: <code>reco show recommendations --pipeline demo --date 2026-11-21" in body
    assert body.index("<img") < body.index("<table"), "charts come before the first table"
    assert 'alt="history of aggregate.users with the detector&#x27;s expected band"' in body
    metrics = body.index("<h2>Metrics of the day</h2>")
    assert body.index("<details>", metrics) < body.index("<table", metrics), "the long table is collapsed"


def test_a_stopped_day_names_the_gate_and_the_next_command(small_data, make_ctx, run_pipeline):
    with pytest.raises(CheckFailedError):
        run_pipeline(overrides={"checks.data.distinct_users.min": "100000"})
    ctx = make_ctx()
    body = _body(report.build_html(ctx.pipeline, ctx.env, ctx.session_date))
    status = body[: body.index("</div>")]
    assert 'class="status fail"' in status and "NOT PUBLISHED: stopped by the data checks" in status
    assert "distinct_users" in status and "nothing is published yet" in status
    assert "Next: <code>" in status and "reco run --pipeline demo --date 2026-11-21</code>" in status


def test_the_band_is_the_detectors_range_from_the_days_before():
    cfg = load_pipeline("demo").checks.anomaly
    start = date(2026, 11, 1)
    points = [(start + timedelta(days=i), 100.0 + (i % 3)) for i in range(20)]
    bands = report.expected_bands(points, cfg)
    assert bands, "enough history for the detector"
    for d, lo, hi in bands:
        rng = anomaly.expected_range([p for p in points if p[0] < d], d, cfg)
        assert (lo, hi) == (rng.low, rng.high)
    assert bands[0][0] == points[cfg.min_history][0]  # the first day the detector had min_history runs


def test_y_axis_keeps_small_noise_flat():
    lo, hi = report.y_limits([600, 603, 598, 601])
    assert hi - lo >= 0.5 * 600, "at least the median +- 25%"
    assert lo <= 598 and hi >= 603
    lo, hi = report.y_limits([0.0, 0.0, 0.0])
    assert lo == 0 and hi > 0, "a zero count does not get a negative axis"
    lo, hi = report.y_limits([10, 10, 500])  # a real jump still fits
    assert hi >= 500 and lo <= 10
