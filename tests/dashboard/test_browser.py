"""The dashboard as a person uses it, in a real Chromium (Debian's package, headless, driven by Playwright; no
browser is downloaded). Skipped where /usr/bin/chromium is not installed (.ci/run installs it).

Set DASHBOARD_SCREENSHOTS=docs/dashboard to (re)write the screenshots of docs/dashboard.md."""

from __future__ import annotations

import os
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from dash_helpers import FAILED_DAY, PLANTED, SESSION

CHROMIUM = os.environ.get("RECO_CHROMIUM", "/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and shutil.which(CHROMIUM)), reason=f"no Chromium at {CHROMIUM}"
)
SHOTS = os.environ.get("DASHBOARD_SCREENSHOTS")


@pytest.fixture(scope="module")
def browser(tmp_path_factory, served):
    """One headless Chromium with a fresh profile (a persistent context: Playwright's way to pass
    --user-data-dir)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            viewport={"width": 1400, "height": 1000},
            base_url=served.url,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield ctx
        ctx.close()


@pytest.fixture
def page(browser):
    pg = browser.new_page()
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
    yield pg
    pg.close()
    assert not errors, errors  # no script error, nothing fetched from anywhere but the dashboard


def shot(pg, name):
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def test_overview_to_explorer_shows_the_planted_anomaly_then_zoom_and_hover(page):
    page.goto("/")
    row = page.locator('tr[data-pipeline="demo"]')
    assert row.locator("td.status").inner_text() == "published"
    shot(page, "overview")
    row.locator("a.pipeline-link").click()
    page.wait_for_selector('#explorer-chart[data-ready="1"]')
    assert "/metrics?" in page.url and "pipeline=demo" in page.url
    # the chart carries an anomaly point on the planted day (series 4 = first series' anomaly markers)
    marker = page.evaluate(
        """(day) => { const u = document.querySelector('#explorer-chart').uplot;
              const i = u.data[0].indexOf(Date.parse(day) / 1000); return [i, u.data[1][i], u.data[4][i]]; }""",
        str(PLANTED),
    )
    assert marker[0] >= 0 and marker[2] is not None and marker[2] == marker[1]
    assert str(PLANTED) in page.locator("#series-table").inner_text()
    shot(page, "explorer")
    # hover: the legend shows the value under the cursor
    box = page.locator("#explorer-chart .u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    legend = page.locator("#explorer-chart .u-legend").inner_text()
    assert any(ch.isdigit() for ch in legend)
    # zoom: drag over the middle third; the URL keeps the range
    before = page.url
    page.mouse.move(box["x"] + box["width"] * 0.33, box["y"] + 40)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.66, box["y"] + 40, steps=8)
    page.mouse.up()
    page.wait_for_function("() => location.search.includes('since=')")
    assert page.url != before
    since = page.url.split("since=")[1][:10]
    assert str(SESSION - timedelta(days=89)) < since < str(SESSION)
    page.reload()  # the shared URL opens the same range
    page.wait_for_selector('#explorer-chart[data-ready="1"]')
    assert page.locator('input[name="since"]').first.input_value() == since


def test_run_detail_of_a_failed_gate(page):
    page.goto("/runs/demo")
    page.locator(f'a[href="/runs/demo/{FAILED_DAY}"]').click()
    page.wait_for_selector("#failures")
    text = page.locator("#failures").inner_text()
    assert "volume" in text
    assert page.locator("#published").inner_text() == "no"
    shot(page, "run-failed-gate")
    page.goto(f"/runs/demo/{SESSION}")
    assert page.locator("#steps").inner_text().count("committed") >= 5
    shot(page, "run")


def test_look_up_a_users_recommendations_and_related_items(page):
    page.goto("/recs/demo")
    user = page.locator("p.small a").first.inner_text()
    page.fill("#user-input", user)
    page.click("#lookup")
    page.wait_for_selector("#recommendations")
    rows = page.locator("#recommendations tr")
    assert rows.count() > 5
    assert page.locator("#history tr").count() > 1
    assert f"user={user}" in page.url  # shareable
    shot(page, "recommendations")
    page.locator("#recommendations a").first.click()
    page.wait_for_selector("#related")
    assert page.locator("#related tr").count() > 1


def test_model_shift_page_draws_its_charts(page):
    page.goto("/models/demo")
    page.wait_for_selector('#scores-chart[data-ready="1"]')
    assert page.locator(".chart-box").count() == 4
    shot(page, "model-shift")


def test_unknown_user_page_says_what_exists(page):
    page.goto("/recs/demo?user=nobody")
    assert "no user 'nobody'" in page.locator("#error-message").inner_text()
    assert page.locator("#known li").count() > 0
    shot(page, "not-found")
