"""Data checks after aggregate: is the day's input fit to train on?

Each check measures one number from the aggregate step's stats and compares it with configured bounds
(``checks.data`` in the pipeline config); each has ``severity: fail | warn``:

- freshness: hours between the latest valid event and the end of the session date (pipeline timezone). Judged
  against the source's own rate: it fails only when at least ``min_expected_events`` events would have been
  expected in the gap (trailing median per-day volume x gap), so a sparse or replayed source is not "stale".
- volume: valid events on the session date / trailing median per-day volume. The baseline is what previous
  runs saw for their own date (metric store, ``aggregate.events_session_day``): each run sees its day at the same
  point after midnight, so late-arriving rows do not bias it. With fewer than ``min_history_days`` such runs,
  the previous days of this run's own window are used instead. Skipped when the median is below
  ``min_median_events`` (a ratio of small counts is noise).
- invalid_rows: rows dropped (null ids, bad timestamps, unknown event types, duplicates) / rows scanned.
- distinct_users, distinct_items: minimum counts after the aggregate's thresholds.

This module computes results; it never raises. The gate layer (batch/checks/gates.py, batch/execute.py) records, alerts and
turns a failing ``fail`` check into CheckFailedError.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta

from batch.config import DataChecksConfig


@dataclass
class CheckResult:
    """One check's outcome. status: pass | warn | fail | skipped."""

    name: str
    status: str
    value: float | None
    bound: str
    message: str
    severity: str = "fail"
    details: dict = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status == "fail"

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        v = "n/a" if self.value is None else f"{self.value:.4g}"
        return f"{self.name}: {self.message} (value {v}, bound {self.bound})"


def _ts(value: str) -> datetime:
    ts = datetime.fromisoformat(value)
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _outcome(ok: bool, severity: str) -> str:
    return "pass" if ok else ("fail" if severity == "fail" else "warn")


def volume_baseline(
    stats: dict, session_date: date, history: dict[str, float] | None, window_days: int, min_history_days: int
) -> tuple[float | None, str, int]:
    """(median per-day volume, where it came from, days used) for the days before the session date."""
    start = (session_date - timedelta(days=window_days)).isoformat()
    end = session_date.isoformat()
    if history:
        prior = [v for d, v in history.items() if start <= d < end and v is not None]
        if len(prior) >= min_history_days:
            return float(statistics.median(prior)), "metric store (previous runs)", len(prior)
    per_day = stats.get("events_per_day") or {}
    # days without any event in the window are zeros, not missing: a dead source must not raise the median
    days = [(session_date - timedelta(days=i)).isoformat() for i in range(1, window_days + 1)]
    window_start = (stats.get("window") or {}).get("start", "")[:10]
    days = [d for d in days if not window_start or d >= window_start]
    if len(days) < min_history_days:
        return None, "not enough days in the window", len(days)
    return float(statistics.median(per_day.get(d, 0) for d in days)), "this run's window", len(days)


def run_checks(
    stats: dict,
    session_date: date,
    window_end: datetime,
    cfg: DataChecksConfig,
    history: dict[str, float] | None = None,
) -> list[CheckResult]:
    results: list[CheckResult] = []
    day = session_date.isoformat()
    events_day = float((stats.get("events_per_day") or {}).get(day, 0))
    median, source, n_days = volume_baseline(
        stats, session_date, history, cfg.volume.window_days, cfg.volume.min_history_days
    )

    c = cfg.freshness
    if c.enabled:
        latest = stats.get("latest_event_ts")
        if latest is None:
            results.append(
                CheckResult(
                    "freshness",
                    _outcome(False, c.severity),
                    None,
                    f"<= {c.max_lag_hours}h",
                    "no valid event in the window",
                    c.severity,
                )
            )
        else:
            ts = _ts(latest)
            lag_h = max(0.0, (window_end - ts).total_seconds() / 3600)
            expected = (median or 0.0) * lag_h / 24
            bound = f"<= {c.max_lag_hours:g}h"
            if lag_h <= c.max_lag_hours:
                results.append(
                    CheckResult(
                        "freshness",
                        "pass",
                        lag_h,
                        bound,
                        f"latest event {latest}, {lag_h:.1f}h before the end of {day}",
                        c.severity,
                    )
                )
            elif expected < c.min_expected_events:
                results.append(
                    CheckResult(
                        "freshness",
                        "skipped",
                        lag_h,
                        bound,
                        f"latest event {lag_h:.1f}h before the end of {day}, but only {expected:.1f} events were "
                        f"expected in that gap (min_expected_events={c.min_expected_events:g}): too sparse to judge",
                        c.severity,
                    )
                )
            else:
                results.append(
                    CheckResult(
                        "freshness",
                        _outcome(False, c.severity),
                        lag_h,
                        bound,
                        f"source looks stale: latest valid event {latest} is {lag_h:.1f}h before the end of {day} "
                        f"(max_lag_hours={c.max_lag_hours:g}; ~{expected:.0f} events expected in that gap)",
                        c.severity,
                        {"latest_event_ts": latest, "expected_events_in_gap": round(expected, 1)},
                    )
                )

    c = cfg.volume
    if c.enabled:
        bound = f"{c.min_ratio:g}..{c.max_ratio:g} x median"
        details = {"events_session_day": events_day, "median": median, "baseline": source, "days": n_days}
        if median is None or median < c.min_median_events:
            results.append(
                CheckResult(
                    "volume",
                    "skipped",
                    None,
                    bound,
                    f"no usable baseline ({source}; median {median}, min_median_events={c.min_median_events:g})",
                    c.severity,
                    details,
                )
            )
        else:
            ratio = events_day / median
            ok = c.min_ratio <= ratio <= c.max_ratio
            msg = (
                f"{events_day:.0f} valid events on {day} = {ratio:.0%} of the trailing median {median:.0f} "
                f"({n_days} days, {source})"
            )
            if not ok:
                msg = ("volume too low: " if ratio < c.min_ratio else "volume too high: ") + msg
            results.append(
                CheckResult("volume", _outcome(ok, c.severity), ratio, bound, msg, c.severity, details)
            )

    c = cfg.invalid_rows
    if c.enabled:
        scanned = stats.get("rows_scanned") or 0
        dropped = sum((stats.get("dropped") or {}).values())
        ratio = dropped / scanned if scanned else 0.0
        ok = ratio <= c.max_ratio
        results.append(
            CheckResult(
                "invalid_rows",
                _outcome(ok, c.severity),
                ratio,
                f"<= {c.max_ratio:g}",
                f"{dropped} of {scanned} rows dropped ({ratio:.2%}): {stats.get('dropped')}",
                c.severity,
            )
        )

    for name, key in (("distinct_users", "users"), ("distinct_items", "items")):
        c = getattr(cfg, name)
        if c.enabled:
            n = int(stats.get(key) or 0)
            ok = n >= c.min
            results.append(
                CheckResult(
                    name,
                    _outcome(ok, c.severity),
                    float(n),
                    f">= {c.min}",
                    f"{n} {key} in the window" + ("" if ok else f", fewer than min={c.min}"),
                    c.severity,
                )
            )
    return results


def check_metrics(stats: dict, session_date: date, window_end: datetime) -> dict[str, float]:
    """Numbers worth keeping in the metric store whatever the checks decide."""
    scanned = stats.get("rows_scanned") or 0
    dropped = sum((stats.get("dropped") or {}).values())
    out = {
        "events_session_day": float((stats.get("events_per_day") or {}).get(session_date.isoformat(), 0)),
        "invalid_ratio": dropped / scanned if scanned else 0.0,
    }
    if stats.get("latest_event_ts"):
        out["latest_event_lag_hours"] = (window_end - _ts(stats["latest_event_ts"])).total_seconds() / 3600
    return out
