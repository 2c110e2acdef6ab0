"""The run report: one self-contained HTML file per pipeline and date that people can look at.

Laid out for triage: a status line first (published or not, which gate stopped the batch, the next command), then
the charts (history from the metric store with the anomaly detector's expected band, on y axes that keep day-to-day
noise flat; score and popularity distributions), then the tables (gates' results, coverage, a few users with their
history and recommendations), and the long metrics table and the summary JSON collapsed at the end. Charts are matplotlib (Agg) PNGs inlined as base64: the file needs no network, no JS, no CSS
from elsewhere, so it can be mailed, attached or opened from a bucket.

Default location: ``<artifact_root>/reports/<pipeline>/<date>/index.html`` (``$RECO_HOME/artifacts/reports/...``
locally, the artifacts bucket in the cloud); the export step writes it at the end of every run, and a gate that
stops the batch writes it before alerting. Everything is read back from committed artifacts and the metric
store, so ``reco report`` rebuilds the same page at any time. Missing pieces (a batch stopped at aggregate) are
shown as missing, never an error.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from datetime import date, timedelta

import duckdb
import fsspec
import numpy as np
import pandas as pd

from batch import ledger, timings
from batch import metrics_store as ms
from batch.checks import anomaly
from batch.errors import ArtifactError
from batch.graph import GRAPH
from batch.storage import ArtifactStore, write_bytes_atomic
from batch.summary import build_summary
from batch.warehouse.duckdb import register_fsspec

log = logging.getLogger(__name__)

HISTORY_DAYS = 60
SAMPLE_USERS = 5
# The y axis of a history chart spans at least the median +- this share of it: a metric that moves by 1% does not
# fill the chart (matplotlib's auto-scaling would make that noise look like a cliff).
MIN_RELATIVE_SPAN = 0.25


def _committed(store, pipeline, dataset, dt):
    try:
        return store.committed(pipeline, dataset, dt, step=dataset)
    except ArtifactError:
        return None


# -- charts ------------------------------------------------------------------------------------------------------


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig, alt: str = "chart") -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    _plt().close(fig)
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def expected_bands(points: list[tuple[date, float]], cfg) -> list[tuple[date, float, float]]:
    """The anomaly detector's expected range at each point, from the points before it (as the detector saw it on
    that day); points with too little history have none."""
    out = []
    for d, _ in points:
        rng = anomaly.expected_range([(x, v) for x, v in points if x < d], d, cfg)
        if rng is not None and rng.low is not None and rng.high is not None:
            out.append((d, rng.low, rng.high))
    return out


def y_limits(values: list[float], min_relative_span: float = MIN_RELATIVE_SPAN) -> tuple[float, float]:
    """An axis that holds every value (and band) yet spans at least the median +- ``min_relative_span``."""
    center = float(np.median(values))
    half = abs(center) * min_relative_span or max((abs(v) for v in values), default=0.0) or 1.0
    lo, hi = min(min(values), center - half), max(max(values), center + half)
    pad = (hi - lo) * 0.05
    lo, hi = lo - pad, hi + pad
    if lo < 0 <= min(values):
        lo = 0.0  # a count or a ratio never goes below zero: do not draw room for it
    return lo, hi


def history_chart(
    name: str, points: list[tuple[date, float]], today: date, bands: list[tuple[date, float, float]] = ()
) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 2.2))
    xs = [d for d, _ in points]
    ys = [v for _, v in points]
    if bands:
        ax.fill_between(
            [d for d, _, _ in bands],
            [lo for _, lo, _ in bands],
            [hi for _, _, hi in bands],
            step="mid",
            color="tab:green",
            alpha=0.18,
            lw=0,
            label="expected (detector)",
        )
    ax.plot(xs, ys, marker=".", lw=1)
    band_today = next(((lo, hi) for d, lo, hi in bands if d == today), None)
    for d, v in points:
        if d == today:
            outside = band_today is not None and not band_today[0] <= v <= band_today[1]
            ax.plot([d], [v], "o", color="crimson" if outside else "black", ms=5)
    ax.set_ylim(*y_limits(ys + [b for _, lo, hi in bands for b in (lo, hi)]))
    ax.set_title(name, fontsize=9)
    ax.tick_params(labelsize=7)
    if bands:
        ax.legend(fontsize=6, loc="lower left", frameon=False)
    # the axis spans the history shown (or a week), not matplotlib's years around a single point
    start = min([*xs, today - timedelta(days=7)])
    ax.set_xlim(start - timedelta(days=1), today + timedelta(days=1))
    fig.autofmt_xdate()
    alt = f"history of {name}" + (" with the detector's expected band" if bands else "")
    return _png(fig, alt=alt)


def histogram(values_by_label: dict[str, np.ndarray], title: str, xlabel: str) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 2.6))
    arrays = [v for v in values_by_label.values() if len(v)]
    if arrays:
        lo, hi = min(float(np.min(v)) for v in arrays), max(float(np.max(v)) for v in arrays)
        bins = np.linspace(lo, hi if hi > lo else lo + 1, 40)
        for label, v in values_by_label.items():
            if len(v):
                ax.hist(v, bins=bins, alpha=0.55, label=label, density=True)
        ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.tick_params(labelsize=7)
    return _png(fig)


def popularity_chart(item_users: np.ndarray, rec_counts: np.ndarray) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 2.6))
    if len(item_users):
        ax.plot(np.arange(1, len(item_users) + 1), np.sort(item_users)[::-1], label="users per item (input)")
    if len(rec_counts):
        ax.plot(np.arange(1, len(rec_counts) + 1), np.sort(rec_counts)[::-1], label="times recommended")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("item rank", fontsize=8)
    ax.set_title("popularity: input vs recommendations (long tail)", fontsize=9)
    ax.legend(fontsize=7)
    ax.tick_params(labelsize=7)
    return _png(fig)


# -- html --------------------------------------------------------------------------------------------------------

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:17px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}
table{border-collapse:collapse;font-size:12px;margin:6px 0}td,th{border:1px solid #ddd;padding:3px 7px;
text-align:left;vertical-align:top}th{background:#f4f4f4}.pass{color:#17803d}.fail{color:#c62828;font-weight:bold}
.warn{color:#b26a00;font-weight:bold}.skipped{color:#777}.grid{display:flex;flex-wrap:wrap;gap:8px}
.muted{color:#777}.kv td:first-child{font-weight:bold}code{background:#f4f4f4;padding:1px 3px}
.status{padding:10px 14px;border-radius:4px;font-size:15px;margin-bottom:8px}.status.ok{background:#e6f4ea;
border-left:6px solid #17803d}.status.fail{background:#fdecea;border-left:6px solid #c62828}
.facts{font-size:13px}details{margin:6px 0}summary{cursor:pointer;color:#333}
"""


def _e(v) -> str:
    return html.escape("" if v is None else str(v))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return _e(v)


def _table(rows: list[dict], columns: list[str], status_col: str | None = None) -> str:
    if not rows:
        return '<p class="muted">none</p>'
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = []
    for r in rows:
        cells = []
        for c in columns:
            cls = f' class="{_e(r.get(c))}"' if c == status_col else ""
            cells.append(f"<td{cls}>{_fmt(r.get(c))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _kv(pairs: list[tuple[str, object]]) -> str:
    return (
        '<table class="kv">'
        + "".join(f"<tr><td>{_e(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in pairs)
        + "</table>"
    )


def rerun_command(name: str, env_name: str, dt: date) -> str:
    """How to run the date again (safe: a new run directory, the markers move)."""
    if env_name == "local":
        return f"reco run --pipeline {name} --date {dt}"
    return f"reco backfill --pipeline {name} --from {dt} --to {dt} --env {env_name} --name rerun-{dt}"


def status_line(
    name: str, env_name: str, dt: date, summary: dict, verdicts: dict, latest: dict | None
) -> str:
    """The first thing on the page: published or not, which gate stopped the batch, the next command."""
    failed = [
        (gate, doc) for gate, doc in verdicts.items() if doc is not None and not doc.get("passed", True)
    ]
    in_service = (
        f"in service: {latest['dt']} ({latest['model_version']})" if latest else "nothing is published yet"
    )
    if summary["published"]["this_date_published"]:
        cls, head = "ok", f"PUBLISHED: {name} {dt} is live"
        detail = f"model {(summary.get('model') or {}).get('version') or 'n/a'}; {in_service}"
        nxt = f"reco show recommendations --pipeline {name} --date {dt} --env {env_name}"
    elif failed:
        gate, doc = failed[0]
        cls, head = "fail", f"NOT PUBLISHED: stopped by the {gate}"
        detail = "; ".join(doc.get("failures") or []) + f"; {in_service}"
        nxt = f"read the failed checks below; once the input is fixed (or the change is expected): {rerun_command(name, env_name, dt)}"
    else:
        done = list(summary.get("steps") or {})
        cls, head = (
            "fail",
            f"NOT PUBLISHED: {name} {dt} stopped "
            + (f"after step {done[-1]}" if done else "before any step committed"),
        )
        detail = f"no gate failed; {in_service}"
        nxt = rerun_command(name, env_name, dt)
    return (
        f'<div id="status" class="status {cls}"><b>{_e(head)}</b> <span>{_e(detail)}</span>'
        f"<br>Next: <code>{_e(nxt)}</code></div>"
    )


def _facts(pairs: list[tuple[str, object]]) -> str:
    """Key facts as one line of text (not a table: the charts come before the first table)."""
    return (
        "<p class='facts'>"
        + " &middot; ".join(f"<b>{_e(k)}</b>: {_fmt(v)}" for k, v in pairs if v is not None)
        + "</p>"
    )


def build_html(pipeline_cfg, env_cfg, dt: date) -> str:
    store = ArtifactStore(env_cfg.resolved_artifact_root())
    name = pipeline_cfg.name
    summary = build_summary(store, name, dt, pipeline_cfg.candidates.shard_count)
    latest = store.latest(name)
    promoted = store.promoted_model(name)
    verdicts = {}
    for gate in GRAPH.gates():
        c = _committed(store, name, gate.dataset, dt)
        verdicts[gate.name] = c.read_json(gate.file) if c is not None else None

    # 1. status and the key facts
    parts: list[str] = [
        status_line(name, env_cfg.name, dt, summary, verdicts, latest),
        f"<h1>Run report: {_e(name)} {dt} <span class='muted'>({_e(env_cfg.name)})</span></h1>",
        _facts(
            [
                ("model of this date", (summary.get("model") or {}).get("version")),
                ("latest publish (in service)", latest and f"{latest['dt']} ({latest['model_version']})"),
                ("promoted model", promoted and f"{promoted['model_version']} (published {promoted['dt']})"),
                ("artifacts", f"{store.root_url}/{name}/"),
                ("ledger (what served when)", ledger.history_command(name, env_cfg.name)),
                ("steps committed", ", ".join(summary["steps"]) or "none"),
            ]
        ),
    ]

    # 2. charts: history with the detector's band, then the output's distributions
    cfg = pipeline_cfg.checks.anomaly
    hist = ms.safe_history(env_cfg, cfg.table, name, since=dt - timedelta(days=HISTORY_DAYS), until=dt)
    parts.append(
        f"<h2>History (last {HISTORY_DAYS} days, metric store)</h2>"
        "<p class='muted'>shaded: the range the anomaly detector expected on each day, from the days before it; "
        f"the y axis spans at least the median &plusmn;{MIN_RELATIVE_SPAN:.0%}; today's point is red when "
        "outside the range</p><div class='grid'>"
    )
    charted = 0
    for metric in cfg.metrics + ["train.timing_s"]:
        step, _, m = metric.partition(".")
        s = ms.series(hist, step, m, {"phase": "total_s"} if m == "timing_s" else None)
        if len(s) >= 2:  # one point is no history: its chart costs ~0.3 s and shows nothing
            pts = sorted((date.fromisoformat(d), v) for d, v in s.items())
            bands = expected_bands(pts, cfg) if m != "timing_s" else []
            parts.append(
                history_chart(metric if m != "timing_s" else f"{step} total seconds", pts, dt, bands)
            )
            charted += 1
    parts.append(
        "</div>" if charted else "</div><p class='muted'>no history yet: charts start with the second day</p>"
    )
    charts, tables = _output_sections(store, name, dt, summary)
    parts += charts

    # 3. tables
    parts.append("<h2>Quality gates</h2>")
    for gate in GRAPH.gates():
        doc = verdicts[gate.name]
        parts.append(f"<h3>{_e(gate.name)} (after {_e(gate.guards)})</h3>")
        if doc is None:
            parts.append('<p class="muted">not run</p>')
            continue
        parts.append(
            _table(
                doc.get("results", []),
                ["name", "status", "value", "bound", "severity", "message"],
                status_col="status",
            )
        )
        if doc.get("reference_model") or doc.get("previous_publish"):
            parts.append(
                f"<p class='muted'>compared with promoted model {_e(doc.get('reference_model'))} and the "
                f"publish of {_e(doc.get('previous_publish'))}</p>"
            )
        if doc.get("stats"):
            parts.append(_kv(sorted(doc["stats"].items())))
    if summary.get("incremental"):
        parts.append(incremental_section(summary))
    parts += tables
    parts.append(
        "<h2>Where the time went</h2><p class='muted'>per step process: start-up (interpreter and imports), the "
        "step's own work and its phases, then what the platform adds (input check, gates, metric store, alerts, "
        "this report); the step writing this report records its own timings after it</p>"
    )
    parts.append(_table(timings.table_rows(summary.get("steps") or {}), timings.TABLE_COLUMNS))

    # 4. the long ones, collapsed
    today = hist[hist["dt"] == dt] if not hist.empty else hist
    parts.append("<h2>Metrics of the day</h2>")
    if today.empty:
        parts.append('<p class="muted">no metrics recorded for this date</p>')
    else:
        rows = [
            {
                "step": r.step,
                "metric": r.metric,
                "dimensions": "" if r.dimensions == "{}" else r.dimensions,
                "value": float(r.value),
            }
            for r in today.itertuples()
        ]
        parts.append(
            f"<details><summary>{len(rows)} metrics recorded by the steps and gates (the charts above show the "
            f"watched ones)</summary>{_table(rows, ['step', 'metric', 'dimensions', 'value'])}</details>"
        )
    parts.append(
        "<details><summary>summary JSON</summary><pre style='font-size:11px'>"
        f"{_e(json.dumps(summary, indent=1, default=str)[:20000])}</pre></details>"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(name)} {dt} run report</title>"
        f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>"
    )


def incremental_section(summary: dict) -> str:
    """The day's fit in its incremental chain (docs/incremental.md): kind and why, the parent, the links since
    the last full fit, the drift guard, what the aggregate read and how users' lists were made."""
    inc = summary["incremental"]
    parent = inc.get("parent") or {}
    guard = inc.get("drift_guard") or {}
    metric = guard.get("metric") or {}
    overlap = guard.get("overlap") or {}
    read = summary.get("events_read") or {}
    counts = (summary.get("steps", {}).get("candidates") or {}).get("counts") or {}
    facts = [
        ("fit", f"{inc.get('kind')}: {inc.get('reason')}"),
        ("parent model", parent and f"{parent.get('model_version')} ({parent.get('dt')})"),
        ("last full fit", inc.get("last_full_dt")),
        (
            "drift guard",
            guard
            and (
                ("refit fully: " + "; ".join(guard.get("reasons") or []))
                if guard.get("triggered")
                else f"passed: {metric.get('metric', 'metric')} {_fmt(metric.get('value'))} vs the parent's "
                f"{_fmt(metric.get('parent'))} on the same split; overlap@{overlap.get('k')} "
                f"{_fmt(overlap.get('mean'))} (floor {_fmt(overlap.get('floor'))})"
            ),
        ),
        (
            "events read",
            read.get("mode") == "partials"
            and f"{read.get('days_reused', 0)} days from stored partials, "
            f"{len(read.get('days_computed') or {})} computed ({', '.join(read.get('days_restated') or []) or 'none'} "
            f"restated)",
        ),
        (
            "users' lists",
            counts
            and f"{counts.get('users_recomputed', 0):,} scored against every item, "
            f"{counts.get('users_refreshed', 0):,} refreshed, {counts.get('users_carried', 0):,} carried",
        ),
        ("warnings", "; ".join(inc.get("warnings") or [])),
    ]
    chain = [
        {"date": link.get("dt"), "model": link.get("model_version"), "kind": link.get("kind")}
        for link in inc.get("chain") or []
    ]
    return (
        "<h2>Incremental chain</h2>"
        + _facts([(k, v) for k, v in facts if v])
        + _table(chain[::-1], ["date", "model", "kind"])
    )


SCORE_SAMPLE = 200_000  # scores drawn for the histograms: the picture, without loading every row


def _duckdb_for(store: ArtifactStore):

    con = duckdb.connect()
    register_fsspec(con, store.display(store.root))
    return con


def _score_sample(con, url: str) -> np.ndarray:
    rows = con.execute(
        f"SELECT score FROM read_parquet($url) WHERE source = 'personal' "
        f"USING SAMPLE reservoir({SCORE_SAMPLE} ROWS) REPEATABLE (7)",
        {"url": url},
    ).fetchall()
    return np.array([r[0] for r in rows], dtype=np.float32)


def _output_sections(store: ArtifactStore, name: str, dt: date, summary: dict) -> tuple[list[str], list[str]]:
    """(charts, tables): distributions, then coverage and a few users, computed by DuckDB over the export's
    Parquet (an export of tens of millions of rows is never loaded whole)."""
    parts: list[str] = []  # charts
    tables: list[str] = []
    agg = _committed(store, name, "interactions", dt)
    export = _committed(store, name, "export", dt)
    if export is None:
        return ["<h2>Recommendations</h2><p class='muted'>no export for this date</p>"], []
    url = store.display(export.path("recommendations.parquet"))
    con = _duckdb_for(store)
    try:
        personal = _score_sample(con, url)
        prev = store.previous_publish(name, dt)
        prev_scores = np.array([])
        if prev and (prev.get("files") or {}).get("recommendations.parquet"):
            try:
                prev_scores = _score_sample(con, store.display(prev["files"]["recommendations.parquet"]))
            except Exception:  # a report shows what it can
                prev_scores = np.array([])
        rec_counts = np.array(
            [
                r[0]
                for r in con.execute(
                    "SELECT COUNT(*) AS c FROM read_parquet($url) GROUP BY item_id ORDER BY c DESC",
                    {"url": url},
                ).fetchall()
            ]
        )
        parts.append("<h2>Score distribution</h2>")
        parts.append(
            histogram(
                {
                    f"{dt} personal": personal,
                    **({f"{prev['dt']} (previous publish)": prev_scores} if len(prev_scores) else {}),
                },
                f"scores of personal recommendations (a sample of up to {SCORE_SAMPLE:,})",
                "score",
            )
        )
        item_users = np.array([])
        items = None
        if agg is not None:
            items = agg.read_parquet("items.parquet").to_pandas()
            item_users = items["n_users"].to_numpy()
        parts.append("<h2>Popularity and coverage</h2>")
        parts.append(popularity_chart(item_users, rec_counts))
        n_avail = int(items["available"].sum()) if items is not None else None
        stats = (summary.get("export") or {}).get("stats") or {}
        distinct = len(rec_counts)
        total = int(rec_counts.sum()) if len(rec_counts) else 0
        tables.append("<h2>Coverage</h2>")
        tables.append(
            _kv(
                [
                    ("users with recommendations", stats.get("users")),
                    ("user coverage (of the model's users)", stats.get("user_coverage")),
                    ("distinct items recommended", distinct),
                    ("catalog coverage (of available items)", distinct / n_avail if n_avail else None),
                    ("share of rows from the model (rest: popularity fallback)", stats.get("personal_share")),
                    (
                        "share of rows taken by the most recommended item",
                        float(rec_counts[0] / total) if total else None,
                    ),
                ]
            )
        )
        tables.append("<h2>A few users</h2>")
        tables.append(_users_section(store, con, agg, url))
    finally:
        con.close()
    return parts, tables


def _users_section(store: ArtifactStore, con, agg, recs_url: str) -> str:
    if agg is None:
        return "<p class='muted'>no data</p>"
    users = agg.read_parquet("users.parquet").to_pandas()
    with_hist = users[users["n_items"] > 0]
    rng = np.random.default_rng(0)
    pick = (
        with_hist.sample(min(SAMPLE_USERS - 1, len(with_hist)), random_state=rng)
        if len(with_hist)
        else with_hist
    )
    chosen = pd.concat([pick, users[users["n_items"] == 0].head(1)])
    if chosen.empty:
        return "<p class='muted'>no data</p>"
    items = (
        agg.read_parquet("items.parquet", columns=["item_idx", "item_id"]).to_pandas().set_index("item_idx")
    )
    inter = con.execute(
        "SELECT user_idx, item_idx, weight FROM read_parquet($url) WHERE list_contains($users, user_idx)",
        {
            "url": store.display(agg.path("interactions.parquet")),
            "users": chosen["user_idx"].astype(int).tolist(),
        },
    ).df()
    recs = con.execute(
        "SELECT user_id, item_id, rank, score, source FROM read_parquet($url) WHERE list_contains($users, user_id)",
        {"url": recs_url, "users": chosen["user_id"].astype(str).tolist()},
    ).df()
    out = []
    for u in chosen.itertuples():
        h = inter[inter["user_idx"] == u.user_idx].sort_values("weight", ascending=False).head(10)
        hist_items = items.loc[h["item_idx"], "item_id"].tolist() if len(h) else []
        r = recs[recs["user_id"] == u.user_id].sort_values("rank").head(10)
        rec_cells = ", ".join(
            f"{_e(i)} <span class='muted'>({s:.3g}{'' if src == 'personal' else ', popular'})</span>"
            for i, s, src in zip(r["item_id"], r["score"], r["source"], strict=True)
        )
        hist_cells = (
            ", ".join(
                f"{_e(i)} <span class='muted'>({w:.3g})</span>"
                for i, w in zip(hist_items, h["weight"], strict=True)
            )
            or "<i>no history</i>"
        )
        out.append(
            f"<tr><td><code>{_e(u.user_id)}</code><br><span class='muted'>{int(u.n_items)} items</span></td>"
            f"<td>{hist_cells}</td><td>{rec_cells}</td></tr>"
        )
    return (
        "<table><tr><th>user</th><th>history (top 10 by weight)</th><th>recommendations (top 10)</th></tr>"
        + "".join(out)
        + "</table>"
    )


def write_report(pipeline_cfg, env_cfg, dt: date, out: str | None = None) -> str:
    """Build and write the report; returns where it went (a path or URL)."""
    page = build_html(pipeline_cfg, env_cfg, dt).encode()
    if out is None:
        store = ArtifactStore(env_cfg.resolved_artifact_root())
        path = store.report_location(pipeline_cfg.name, dt)
        write_bytes_atomic(store.fs, path, page)
        return store.display(path)
    fs, path = fsspec.core.url_to_fs(out)
    write_bytes_atomic(fs, path, page)
    return out
