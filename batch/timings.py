"""Where a step's wall time went: its process start-up, its own work and what the platform does around it.

A step's function times its own phases (``result["timings"]``: the query, the fit, the Parquet writes...).
Everything else one `reco step` process spends is timed here by the layer above steps (batch.execute): the
interpreter start and imports, the check that its inputs were not stopped, each gate, the metric store, the
alerts and the run report. Both are written into one record per step, date and shard (batch.storage owns its
location), which `reco show summary`, the run report and `make bench` read, so the platform's own overhead is
visible without a profiler.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager


def process_age_s() -> float | None:
    """Seconds since this process started (Linux /proc), i.e. the interpreter start and imports so far."""
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        started_ticks = int(fields[19])  # field 22 of proc(5), counted from the third field here
        with open("/proc/uptime", encoding="ascii") as f:
            uptime = float(f.read().split()[0])
        return round(max(0.0, uptime - started_ticks / os.sysconf("SC_CLK_TCK")), 3)
    except (OSError, ValueError, IndexError):
        return None


class Phases:
    """Seconds per named phase, in the order the phases first ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._started = time.perf_counter()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = round(self.seconds.get(name, 0.0) + seconds, 3)

    def elapsed_s(self) -> float:
        return round(time.perf_counter() - self._started, 3)


def record(
    *,
    step: str,
    run_id: str,
    shard: tuple[int, int] | None,
    startup_s: float | None,
    work: dict,
    phases: Phases,
) -> dict:
    """The timings record of one step process: start-up, the step's own phases, the platform's phases."""
    platform = dict(phases.seconds)
    work_s = platform.pop("work_s", 0.0)  # the step's function, wall clock; ``work`` is its own breakdown
    total = phases.elapsed_s() + (startup_s or 0.0)
    return {
        "step": step,
        "run_id": run_id,
        "shard": list(shard) if shard else None,
        "startup_s": startup_s,
        "work": {k: v for k, v in work.items() if isinstance(v, int | float)},
        "platform": platform,
        "work_s": round(work_s, 3),
        "overhead_s": round(max(0.0, total - work_s), 3),  # start-up and the platform's phases
        "total_s": round(total, 3),
    }


def combine_shards(records: list[dict]) -> dict:
    """A sharded step's timings: every shard's total, and the slowest shard's record (it bounds the step)."""
    if not records:
        return {}
    slowest = max(records, key=lambda r: r.get("total_s") or 0.0)
    return {**slowest, "shards_total_s": [r.get("total_s") for r in records]}


def table_rows(steps: dict) -> list[dict]:
    """One row per step of a summary's ``steps`` (batch.summary): where its wall time went, for people."""
    rows = []
    for name, entry in steps.items():
        rec = entry.get("phases") or {}
        if not rec:
            continue
        work = {
            k: v
            for k, v in (rec.get("work") or {}).items()
            if k.endswith("_s") and not k.endswith("per_s") and k != "total_s"
        }
        rows.append(
            {
                "step": name
                + (f" (slowest of {len(rec['shards_total_s'])} shards)" if rec.get("shards_total_s") else ""),
                "start-up s": rec.get("startup_s"),
                "work s": rec.get("work_s"),
                "work phases": ", ".join(f"{k.removesuffix('_s')} {v:.2f}" for k, v in work.items()),
                "platform phases": ", ".join(
                    f"{k.removesuffix('_s')} {v:.2f}"
                    for k, v in (rec.get("platform") or {}).items()
                    if v >= 0.005
                ),
                "overhead s": rec.get("overhead_s"),
                "total s": rec.get("total_s"),
            }
        )
    return rows


TABLE_COLUMNS = ["step", "start-up s", "work s", "work phases", "platform phases", "overhead s", "total s"]
