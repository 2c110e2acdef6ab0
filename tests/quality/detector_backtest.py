"""Backtest of the anomaly detectors on seeded series with planted anomalies, level shifts and trend.

Each day after a warm-up is judged from the days before it only (as the daily scan does), by every detector:

- static: fixed bounds a person would set from the first four weeks (their min and max, +-20%);
- rolling: Theil-Sen trend +- MAD over the last 28 days (``anomaly.rolling_range``);
- weekday: the same-weekday baseline (``anomaly.expected_range`` with its defaults: weekday, else rolling);
- forecast: ETS trend + weekly season, 99.9% prediction interval (``forecast.forecast_range``).

Labels: a planted spike or drop is one positive day. A level shift's first day is a positive; the six days after
it are not scored (a detector that still flags them is slow, not wrong), and later flags are false positives.
``python -m tests.quality.detector_backtest`` prints the table (docs/dashboard.md quotes it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np

from batch.checks import anomaly, forecast
from batch.config import AnomalyConfig

START = date(2026, 1, 5)  # a Monday
DAYS = 140
WARMUP = 56
DETECTORS = ("static", "rolling", "weekday", "forecast")


@dataclass
class Scenario:
    name: str
    values: list[float]
    positives: set[int]
    ignored: set[int] = field(default_factory=set)

    def history(self) -> list[tuple[date, float]]:
        return [(START + timedelta(days=i), v) for i, v in enumerate(self.values)]


def _base(rng, trend_per_day: float, growth: float = 0.0) -> np.ndarray:
    i = np.arange(DAYS)
    weekly = np.array([1.0, 1.02, 1.0, 0.98, 1.05, 0.72, 0.68])  # Monday..Sunday: weekend dip
    level = (1000 + trend_per_day * i) * (1 + growth) ** i
    return level * weekly[i % 7] * (1 + rng.normal(0, 0.02, DAYS))


def scenarios(seed: int = 0) -> list[Scenario]:
    rng = np.random.default_rng(seed)
    out = []
    # trend + weekly season with spikes and drops
    y = _base(rng, trend_per_day=3.0)
    spikes = {63: 1.4, 75: 0.6, 88: 1.35, 101: 0.62, 117: 1.45, 131: 0.55}
    for d, f in spikes.items():
        y[d] *= f
    out.append(Scenario("trend + season, spikes", list(y), set(spikes)))
    # a persistent level shift (a model update halves a metric), plus two spikes before it
    y = _base(rng, trend_per_day=0.0)
    y[70] *= 1.5
    y[84] *= 0.55
    shift = 100
    y[shift:] *= 0.6
    out.append(Scenario("level shift", list(y), {70, 84, shift}, ignored=set(range(shift + 1, shift + 7))))
    # steady growth (1%/day compounding) with a weekly season: the trend itself is not an anomaly
    y = _base(rng, trend_per_day=0.0, growth=0.01)
    drops = {66: 0.6, 92: 1.4, 120: 0.6}
    for d, f in drops.items():
        y[d] *= f
    out.append(Scenario("strong trend", list(y), set(drops)))
    return out


def judge(detector: str, sc: Scenario, day: int, cfg: AnomalyConfig) -> bool:
    hist = sc.history()
    today, value = hist[day]
    prior = hist[:day]
    if detector == "static":
        first = [v for _, v in hist[:28]]
        return not (0.8 * min(first) <= value <= 1.2 * max(first))
    if detector == "rolling":
        rng = anomaly.rolling_range(
            prior,
            today,
            window=cfg.window,
            threshold=cfg.threshold,
            min_history=cfg.min_history,
            min_relative_deviation=cfg.min_relative_deviation,
        )
    elif detector == "weekday":
        rng = anomaly.expected_range(prior, today, cfg)
    else:
        rng = forecast.forecast_range(
            prior,
            today,
            window=cfg.forecast.window,
            min_history=cfg.forecast.min_history,
            interval=cfg.forecast.interval,
            min_relative_deviation=cfg.min_relative_deviation,
        )
    return rng is not None and not rng.contains(value)


def backtest(seeds=(0,)) -> dict[str, dict[str, dict[str, float]]]:
    """{detector: {scenario (and "all"): {tp, fp, fn, precision, recall}}}."""
    cfg = AnomalyConfig()
    out: dict = {d: {} for d in DETECTORS}
    for seed in seeds:
        for sc in scenarios(seed):
            for det in DETECTORS:
                counts = out[det].setdefault(sc.name, {"tp": 0, "fp": 0, "fn": 0})
                for day in range(WARMUP, DAYS):
                    if day in sc.ignored:
                        continue
                    flagged = judge(det, sc, day, cfg)
                    if day in sc.positives:
                        counts["tp" if flagged else "fn"] += 1
                    elif flagged:
                        counts["fp"] += 1
    for by in out.values():
        total = {k: sum(c[k] for c in by.values()) for k in ("tp", "fp", "fn")}
        by["all"] = total
        for c in by.values():
            c["precision"] = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 1.0
            c["recall"] = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else 1.0
    return out


def table(result) -> str:
    names = [n for n in next(iter(result.values()))]
    lines = ["| detector | " + " | ".join(f"{n} P / R" for n in names) + " |", "|---|" + "---|" * len(names)]
    for det, by in result.items():
        cells = [f"{by[n]['precision']:.2f} / {by[n]['recall']:.2f}" for n in names]
        lines.append(f"| {det} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(backtest(seeds=(0, 1, 2))))
