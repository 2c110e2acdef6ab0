"""A 7-day sequence: incremental runs (docs/incremental.md) vs full runs of the same days, side by side.

Seeded synthetic data (``reco data generate``) is copied into two homes. Day 0 runs in both (the incremental
chain's first run is a full fit), then days 1..7 each run in both. Per day: event rows read by aggregate (its
``events_read``), fit time (train's evaluate + fit), users rescored (candidates' ``users_recomputed``),
whole-run wall time (``reco run`` as a child process) and next-day nDCG@10 (bench/evaluate.py's holdout:
the day after the session date, new items only).

    python -m bench.incremental --users 5000 --items 2000        # or: python -m bench.run --incremental
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from batch.config import load_environment, load_pipeline
from batch.context import Window
from batch.storage import ArtifactStore
from batch.summary import build_summary
from bench.evaluate import Holdout, read_recs

PIPELINE = "demo"
DAYS = 7


def reco(home: Path, *args: str) -> float:
    """Run reco in ``home``; its wall time in seconds."""
    env = {**os.environ, "RECO_HOME": str(home), "RECO_LOG_FORMAT": "json", "RECO_NO_PROGRESS": "1"}
    exe = Path(sys.executable).parent / "reco"
    started = time.perf_counter()
    done = subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"reco {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall


def figures(home: Path, dt: date, holdout: Holdout, wall: float) -> dict:
    os.environ["RECO_HOME"] = str(home)
    env = load_environment("local")
    store = ArtifactStore(env.resolved_artifact_root())
    pipeline = load_pipeline(PIPELINE)
    s = build_summary(store, PIPELINE, dt, pipeline.candidates.shard_count)
    read = s.get("events_read") or {}
    timings = (s["steps"].get("train") or {}).get("timings") or {}
    counts = (s["steps"].get("candidates") or {}).get("counts") or {}
    export = store.committed(PIPELINE, "export", dt, step="export")
    recs = read_recs(store.display(export.path("recommendations.parquet")))
    return {
        "kind": (s.get("incremental") or {}).get("kind", "full"),
        "reason": (s.get("incremental") or {}).get("reason", ""),
        "rows_read": read.get("rows_read"),
        "days_computed": len(read.get("days_computed") or {}) if "days_computed" in read else None,
        "fit_s": round(timings.get("evaluate_s", 0) + timings.get("fit_s", 0), 2),
        "users_rescored": counts.get("users_recomputed", counts.get("users")),
        "users": counts.get("users"),
        "wall_s": round(wall, 2),
        "ndcg@10": holdout.score(recs)["ndcg@10"],
    }


def run(users: int, items: int, events_per_user: float, work: Path) -> dict:
    end = datetime.now(UTC).date() - timedelta(days=2)  # every event in the past
    first = end - timedelta(days=DAYS + 1)  # day 0; the last session date's next day is `end`
    data = work / "data"
    reco(
        data, "data", "generate", "--pipeline", PIPELINE, "--users", str(users), "--items", str(items),
        "--days", "40", "--end-date", end.isoformat(), "--events-per-user", str(events_per_user), "--seed", "7",
    )  # fmt: skip
    homes = {"incremental": work / "inc", "full": work / "full"}
    for home in homes.values():
        home.mkdir()
        shutil.copy(data / "warehouse.duckdb", home / "warehouse.duckdb")
    pipeline = load_pipeline(PIPELINE)
    rows = []
    for i in range(DAYS + 1):
        dt = first + timedelta(days=i)
        w = Window.for_session(dt, pipeline.aggregate.lookback_days, 1, pipeline.source.timezone)
        holdout = Holdout(str(data / "warehouse.duckdb"), "demo_events", w.start, w.end)
        day = {"dt": dt.isoformat()}
        for name, home in homes.items():
            extra = ["--set", "incremental.enabled=true"] if name == "incremental" else []
            wall = reco(home, "run", "--pipeline", PIPELINE, "--date", dt.isoformat(), *extra)
            day[name] = figures(home, dt, holdout, wall)
        rows.append(day)
        inc, full = day["incremental"], day["full"]
        print(
            f"{dt} {inc['kind']:<11} rows {inc['rows_read']}/{full['rows_read']}  fit {inc['fit_s']}/{full['fit_s']}s  "
            f"rescored {inc['users_rescored']}/{full['users_rescored']}  wall {inc['wall_s']}/{full['wall_s']}s  "
            f"ndcg {inc['ndcg@10']:.4f}/{full['ndcg@10']:.4f}",
            flush=True,
        )
    return {"users": users, "items": items, "events_per_user": events_per_user, "days": rows}


def report(result: dict) -> str:
    lines = [
        f"## Incremental vs full, {DAYS}-day sequence ({result['users']} users, {result['items']} items)",
        "",
        "| day | kind | events read (rows) inc / full | fit s inc / full | users rescored inc / full "
        "| wall s inc / full (ratio) | next-day nDCG@10 inc / full (ratio) |",
        "|---|---|---|---|---|---|---|",
    ]
    for day in result["days"]:
        i, f = day["incremental"], day["full"]
        lines.append(
            f"| {day['dt']} | {i['kind']} | {i['rows_read']:,} / {f['rows_read']:,} | {i['fit_s']} / {f['fit_s']} "
            f"| {i['users_rescored']:,} / {f['users_rescored']:,} | {i['wall_s']} / {f['wall_s']} "
            f"({i['wall_s'] / f['wall_s']:.0%}) | {i['ndcg@10']:.4f} / {f['ndcg@10']:.4f} "
            f"({i['ndcg@10'] / f['ndcg@10'] if f['ndcg@10'] else float('nan'):.3f}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.incremental", description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, default=5000)
    p.add_argument("--items", type=int, default=2000)
    p.add_argument("--events-per-user", type=float, default=40.0)
    p.add_argument("--workdir", default=None)
    args = p.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="reco-bench-inc-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        result = run(args.users, args.items, args.events_per_user, work)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    text = report(result)
    print(text)
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    (out / f"incremental-{stamp}.json").write_text(json.dumps(result, indent=2))
    (out / f"incremental-{stamp}.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
