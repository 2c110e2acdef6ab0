"""The benchmarks' synthetic data sizes: how many users and items a size (events in the 28-day window) means, and
the ``reco data generate`` options that give it. bench/run.py and bench/incremental.py share them, so "10M" is
the same data in both."""

from __future__ import annotations

from datetime import date

EVENTS_PER_USER_IN_WINDOW = 40  # the generator's mean is set so ~this many fall in the 28-day window
ITEMS = 50_000  # from 1M events on; smaller sizes scale the catalogue down
WINDOW_DAYS = 28  # the demo pipeline's aggregate.lookback_days
# share of generated events that survive the cut to the items' time on sale and the dirt (measured at 1M/10M)
KEPT_SHARE = 1 / 1.09


def parse_size(text: str) -> int:
    t = text.strip().upper()
    mult = {"K": 1_000, "M": 1_000_000}.get(t[-1], 1)
    return int(float(t[:-1] if t[-1] in "KM" else t) * mult)


def label(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k"


def users_for(size: int) -> int:
    return max(100, size // EVENTS_PER_USER_IN_WINDOW)


def items_for(size: int) -> int:
    return ITEMS if size >= 1_000_000 else max(2_000, size // 20)


def generate_args(pipeline: str, size: int, days: int, end_date: date, seed: int = 7) -> list[str]:
    """``reco data generate`` options for ``days`` days of traffic ending with ``end_date`` whose every 28-day
    window holds about ``size`` events (the generator spreads each user's events evenly over the days)."""
    per_user = EVENTS_PER_USER_IN_WINDOW * days / WINDOW_DAYS / KEPT_SHARE
    return [
        "data", "generate", "--pipeline", pipeline, "--users", str(users_for(size)), "--items",
        str(items_for(size)), "--days", str(days), "--end-date", end_date.isoformat(),
        "--events-per-user", f"{per_user:.2f}", "--seed", str(seed),
    ]  # fmt: skip
