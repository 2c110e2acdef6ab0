"""Every page over real data, served over loopback: what it shows, the 404s that say what exists, validated query
parameters (injection strings included), an empty and an unreachable store, IAP."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from dash_helpers import FAILED_DAY, PLANTED, SESSION, Served, chart_json, get


def test_overview_lists_the_pipeline_with_its_last_session_and_metrics(served):
    r = get(served, "/")
    assert r.status_code == 200
    assert 'data-pipeline="demo"' in r.text
    assert f"/runs/demo/{SESSION}" in r.text
    assert "published" in r.text and "ok (&le; 36 h)" in r.text  # published just now: within the SLA
    assert "<polyline" in r.text and "aggregate.events_session_day" in r.text


def test_explorer_draws_band_and_marks_the_planted_anomaly(served):
    r = get(served, "/metrics", params={"s": "demo:aggregate.events_session_day"})
    assert r.status_code == 200
    spec = chart_json(r.text, "chart-main")
    [series] = spec["series"]
    x_days = [SESSION - timedelta(days=89) + timedelta(days=i) for i in range(len(spec["x"]))]
    i = x_days.index(PLANTED)
    assert series["anomaly"][i] == series["values"][i]  # the marker sits on the planted spike
    assert series["high"][i] < series["values"][i]
    normal = x_days.index(PLANTED - timedelta(days=7))
    assert series["anomaly"][normal] is None
    assert series["low"][normal] <= series["values"][normal] <= series["high"][normal]
    assert str(PLANTED) in r.text.split('id="series-table"')[1]


def test_explorer_several_series_segments_and_forecast_band(served):
    r = get(
        served,
        "/metrics",
        params=[
            ("s", "demo:aggregate.events_session_day"),
            ("s", "demo:aggregate.dropped:reason=duplicate"),
            ("detector", "forecast"),
            ("since", str(SESSION - timedelta(days=59))),
            ("until", str(SESSION)),
            ("step", "aggregate"),
            ("segment", "reason=null_id"),
        ],
    )
    assert r.status_code == 200
    spec = chart_json(r.text, "chart-main")
    assert [s["spec"] for s in spec["series"]] == [
        "demo:aggregate.events_session_day",
        "demo:aggregate.dropped:reason=duplicate",
    ]
    assert len(spec["x"]) == 60
    assert any(v is not None for v in spec["series"][0]["high"])  # the forecast band
    listed = [x.split('"')[0] for x in r.text.split('id="catalogue"')[1].split('data-spec="')[1:]]
    assert listed == ["demo:aggregate.dropped:reason=null_id"]  # filtered by step and segment


def test_run_detail_of_the_failed_gate_and_of_the_published_run(served):
    r = get(served, f"/runs/demo/{FAILED_DAY}")
    assert r.status_code == 200
    failures = r.text.split('id="failures"')[1].split("</ul>")[0]
    assert "volume" in failures
    assert 'id="published"' in r.text and ">no<" in r.text
    ok = get(served, f"/runs/demo/{SESSION}")
    assert ok.status_code == 200 and 'id="failures"' not in ok.text
    steps = ok.text.split('id="steps"')[1].split("</table>")[0]
    for step in ("aggregate", "train", "candidates", "related", "export"):
        assert step in steps
    assert "highmem" in steps or "standard" in steps
    report = get(served, f"/runs/demo/{SESSION}/report")
    assert report.status_code == 200 and "Run report" in report.text


def test_model_shift_page(served):
    r = get(served, "/models/demo")
    assert r.status_code == 200
    assert 'id="chart-scores"' in r.text
    scores = chart_json(r.text, "chart-scores")
    assert sum(v or 0 for v in scores["series"][0]["values"]) > 0
    assert "coverage" in r.text


def test_recommendations_browser(served):
    page = get(served, "/recs/demo")
    user = page.text.split("user=")[1].split('"')[0]
    r = get(served, "/recs/demo", params={"user": user})
    assert r.status_code == 200
    recs = r.text.split('id="recommendations"')[1].split("</table>")[0]
    assert recs.count("<tr>") > 5
    item = recs.split("item=")[1].split('"')[0]
    rel = get(served, "/recs/demo", params={"item": item})
    assert rel.status_code == 200 and rel.text.split('id="related"')[1].count("<tr>") > 1


@pytest.mark.parametrize(
    "path,params,expect",
    [
        ("/runs/nope/2026-11-21", None, "demo"),
        ("/runs/demo/2001-01-01", None, str(SESSION)),
        ("/recs/demo", {"user": "no_such_user"}, "u0"),
        ("/recs/demo", {"item": "no_such_item"}, "i0"),
        ("/models/demo", {"date": "2001-01-01"}, str(SESSION)),
        ("/metrics", {"s": "nope:aggregate.users"}, "demo"),
        ("/no/such/page", None, "/metrics"),
    ],
)
def test_unknown_things_get_a_404_that_says_what_exists(served, path, params, expect):
    r = get(served, path, params=params)
    assert r.status_code == 404
    known = r.text.split('id="known"')[1]
    assert expect in known


INJECTIONS = [
    "demo'; DROP TABLE run_metrics; --",
    "' OR '1'='1",
    "demo:aggregate.users:reason=x') OR 1=1 --",
    "u1' UNION SELECT * FROM run_metrics --",
    "<script>alert(1)</script>",
]


@pytest.mark.parametrize("bad", INJECTIONS)
def test_injection_strings_are_refused_and_nothing_changes(served, demo_home, bad):
    for path, params in (
        ("/metrics", {"s": bad}),
        ("/metrics", {"since": bad}),
        ("/metrics", {"detector": bad}),
        ("/metrics", {"segment": bad}),
        ("/recs/demo", {"user": bad}),
        ("/recs/demo", {"item": bad}),
        ("/models/demo", {"date": bad}),
    ):
        r = get(served, path, params=params)
        assert r.status_code in (400, 404), (path, params, r.status_code)
        assert "<script>alert" not in r.text
    assert get(served, "/").status_code == 200
    r = get(served, "/metrics", params={"s": "demo:aggregate.events_session_day"})
    assert r.status_code == 200 and str(PLANTED) in r.text  # the table is still there


def test_health_and_readiness(served):
    assert get(served, "/healthz").json() == {"status": "ok"}
    assert get(served, "/readyz").json()["status"] == "ready"


def test_empty_and_unreachable_metric_store(tmp_path, monkeypatch):
    from batch.config import load_environment
    from batch.dashboard.app import create_app

    monkeypatch.setenv("RECO_HOME", str(tmp_path / "empty"))
    with Served(create_app(load_environment("local"))) as s:
        r = get(s, "/")
        assert r.status_code == 200 and "no runs recorded" in r.text
        assert get(s, "/metrics").status_code == 200
    # the DuckDB file is not a database: pages say so, the server stays up
    home = tmp_path / "broken"
    home.mkdir()
    (home / "warehouse.duckdb").write_text("not a database")
    monkeypatch.setenv("RECO_HOME", str(home))
    with Served(create_app(load_environment("local"))) as s:
        r = get(s, "/")
        assert r.status_code == 200 and "metric store could not be read" in r.text
        r = get(s, "/metrics", params={"s": "demo:aggregate.users"})
        assert "metric store could not be read" in r.text
        assert get(s, "/healthz").status_code == 200


def test_cli_registers_the_command():
    from batch.cli import build_parser

    args = build_parser().parse_args(["dashboard", "--port", "9999", "--host", "0.0.0.0"])
    assert (args.env, args.host, args.port) == ("local", "0.0.0.0", 9999)


def test_cli_refuses_a_cloud_env_without_iap(monkeypatch, capsys):
    from batch.cli import main

    monkeypatch.setenv("GCP_PROJECT", "p")
    monkeypatch.delenv("DASHBOARD_IAP_AUDIENCE", raising=False)
    assert main(["dashboard", "--env", "prod"]) == 65
    assert "iap_audience" in capsys.readouterr().err


def test_requests_survive_a_slow_client(served):
    # a second request while another is open: the server answers both
    with requests.Session() as a, requests.Session() as b:
        assert a.get(served.url + "/").status_code == 200
        assert b.get(served.url + "/metrics").status_code == 200
