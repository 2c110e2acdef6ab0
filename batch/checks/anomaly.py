"""Anomaly detection over the metric store's history, and the Slack messages of the quality gates.

Three detectors, each giving an expected range for today's value from the previous runs (never from today):

- static: fixed ``min``/``max`` per metric (``checks.anomaly.static``).
- rolling: a robust linear trend (Theil-Sen) over the last ``window`` runs; the range is the trend's value today
  +- ``threshold`` x 1.4826 x MAD of the residuals. A steady trend is expected, not an anomaly.
- weekday: today's baseline is the median of the same weekday over the last ``weekday_weeks`` weeks; the
  residuals (value - its same-weekday baseline) of the previous runs give the offset (absorbing a trend) and the
  scale (MAD). A weekly dip (weekends) is expected; a drop on a day that is usually high is not.

forecast (batch/checks/forecast.py), for the metrics in ``forecast.metrics``: an ETS model with trend and weekly
seasonality; its prediction interval is the range.

The weekday detector is used once at least ``2 x 7 + min_history`` days of history exist, else rolling. A
deviation is an anomaly only when it is also larger than ``min_relative_deviation`` of the expected value (a
perfectly flat history has MAD 0). Anomalies are warnings by default (``severity: warn``); Slack gets the metric,
the value, the expected range, the detector and the report's location.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, timedelta

import numpy as np

from batch.checks.expected import MAD_SCALE, Expected
from batch.metrics_store import series


@dataclass
class Anomaly:
    metric: str  # "step.metric"
    value: float
    low: float | None
    high: float | None
    detector: str
    message: str

    def to_dict(self) -> dict:
        return asdict(self)


def _mad(x: np.ndarray) -> float:
    return float(np.median(np.abs(x - np.median(x)))) if len(x) else 0.0


def _band(center: float, scale: float, threshold: float, min_rel: float, detector: str) -> Expected:
    half = max(threshold * scale, min_rel * abs(center))
    return Expected(center - half, center + half, center, detector)


def static_range(low: float | None, high: float | None) -> Expected:
    return Expected(low, high, None, "static")


def rolling_range(
    history: list[tuple[date, float]],
    today: date,
    *,
    window: int = 28,
    threshold: float = 4.0,
    min_history: int = 7,
    min_relative_deviation: float = 0.05,
) -> Expected | None:
    """Theil-Sen trend over the last ``window`` points, MAD of its residuals."""
    pts = sorted(history)[-window:]
    if len(pts) < min_history:
        return None
    t = np.array([(d - today).days for d, _ in pts], dtype=float)
    y = np.array([v for _, v in pts], dtype=float)
    i, j = np.triu_indices(len(t), k=1)
    dt = t[j] - t[i]
    slopes = (y[j] - y[i])[dt != 0] / dt[dt != 0]
    slope = float(np.median(slopes)) if len(slopes) else 0.0
    intercept = float(np.median(y - slope * t))  # value at t = 0 (today)
    resid = y - (intercept + slope * t)
    return _band(intercept, MAD_SCALE * _mad(resid), threshold, min_relative_deviation, "rolling median/MAD")


def weekday_range(
    history: list[tuple[date, float]],
    today: date,
    *,
    weeks: int = 4,
    window: int = 28,
    threshold: float = 4.0,
    min_history: int = 7,
    min_relative_deviation: float = 0.05,
) -> Expected | None:
    """Same-weekday median baseline; offset and scale from the previous runs' residuals against theirs."""
    values = dict(history)

    def baseline(d: date) -> float | None:
        same = [
            values[d - timedelta(days=7 * w)]
            for w in range(1, weeks + 1)
            if d - timedelta(days=7 * w) in values
        ]
        return float(np.median(same)) if len(same) >= 2 else None

    resid = []
    for d in sorted(values)[-window:]:
        b = baseline(d)
        if b is not None:
            resid.append(values[d] - b)
    b_today = baseline(today)
    if b_today is None or len(resid) < min_history:
        return None
    r = np.array(resid)
    center = b_today + float(np.median(r))
    return _band(center, MAD_SCALE * _mad(r), threshold, min_relative_deviation, "weekday baseline")


def expected_range(
    history: list[tuple[date, float]], today: date, cfg, name: str | None = None
) -> Expected | None:
    """The statistical detector for a series: the forecast for the metrics listed in ``cfg.forecast.metrics``
    (batch/checks/forecast.py) with enough history, else weekday-aware with enough history, else rolling."""
    prior = [(d, v) for d, v in history if d < today]
    forecast_cfg = getattr(cfg, "forecast", None)
    if forecast_cfg is not None and name in forecast_cfg.metrics:
        from batch.checks.forecast import forecast_range  # statsmodels: only for the series that use it

        got = forecast_range(
            prior,
            today,
            window=forecast_cfg.window,
            min_history=forecast_cfg.min_history,
            interval=forecast_cfg.interval,
            min_relative_deviation=cfg.min_relative_deviation,
        )
        if got is not None:
            return got
    kw = {
        "threshold": cfg.threshold,
        "min_history": cfg.min_history,
        "min_relative_deviation": cfg.min_relative_deviation,
    }
    if len(prior) >= 14 + cfg.min_history:
        got = weekday_range(prior, today, weeks=cfg.weekday_weeks, window=cfg.window, **kw)
        if got is not None:
            return got
    return rolling_range(prior, today, window=cfg.window, **kw)


def detect(name: str, history: list[tuple[date, float]], today: date, value: float, cfg) -> Anomaly | None:
    """Static bounds first, then the statistical detector; None when the value is expected."""
    bound = cfg.static.get(name)
    if bound is not None:
        rng = static_range(bound.min, bound.max)
        if not rng.contains(value):
            return Anomaly(
                name,
                value,
                rng.low,
                rng.high,
                "static",
                f"{name} = {value:.4g} outside the static bounds [{_f(rng.low)}, {_f(rng.high)}]",
            )
    rng = expected_range(history, today, cfg, name)
    if rng is not None and not rng.contains(value):
        return Anomaly(
            name,
            value,
            rng.low,
            rng.high,
            rng.detector,
            f"{name} = {value:.4g}, expected {_f(rng.low)} .. {_f(rng.high)} ({rng.detector}, "
            f"{len([1 for d, _ in history if d < today])} previous runs)",
        )
    return None


def _f(v: float | None) -> str:
    return "-inf" if v is None else f"{v:.4g}"


def scan(history_df, today: date, cfg) -> list[Anomaly]:
    """Every configured metric of today's runs against its history (a metrics_store.history frame)."""
    out = []
    names = list(dict.fromkeys(list(cfg.metrics) + list(cfg.static)))
    for name in names:
        step, _, metric = name.partition(".")
        s = series(history_df, step, metric)
        if today.isoformat() not in s:
            continue
        hist = [(date.fromisoformat(d), v) for d, v in s.items()]
        a = detect(name, hist, today, s[today.isoformat()], cfg)
        if a:
            out.append(a)
    return out


# -- Slack -------------------------------------------------------------------------------------------------------


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def quality_message(
    *,
    pipeline: str,
    session_date: str,
    env: str,
    gate: str,
    stopped: bool,
    lines: list[str],
    report: str | None = None,
    kept: str | None = None,
) -> dict:
    """A gate's findings: which checks, their values and bounds, what happened to the batch."""
    if stopped:
        title = f"{pipeline} {session_date}: {gate} failed ({env}), batch stopped"
        status = ":red_circle: stopped at the " + gate
    else:
        title = f"{pipeline} {session_date}: {gate} warnings ({env})"
        status = ":large_orange_circle: warning, the batch goes on"
    fields = [
        f"*Status*\n{status}",
        f"*Pipeline*\n`{_esc(pipeline)}`",
        f"*Session date*\n{session_date}",
        f"*Environment*\n{env}",
    ]
    if kept:
        fields.append(f"*In service*\n{_esc(kept)}")
    body = "\n".join(f"• {_esc(line)}" for line in lines)[:2800]
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
        {"type": "section", "text": {"type": "mrkdwn", "text": body or "(no details)"}},
    ]
    if report:
        link = f"<{report}|run report>" if "://" in report else f"run report: `{_esc(report)}`"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": link}]})
    return {"text": title, "blocks": blocks}


def anomaly_message(
    *,
    pipeline: str,
    session_date: str,
    env: str,
    anomalies: list[Anomaly],
    report: str | None = None,
    failing: bool = False,
) -> dict:
    lines = [a.message for a in anomalies]
    return quality_message(
        pipeline=pipeline,
        session_date=session_date,
        env=env,
        gate="metric anomaly check" if failing else "metric anomalies",
        stopped=failing,
        lines=lines,
        report=report,
    )
