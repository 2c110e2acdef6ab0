"""A 7-day sequence: incremental runs (docs/incremental.md) vs full runs of the same days, side by side.

Seeded synthetic data of ``--size`` events per 28-day window (the sizes of bench/run.py, bench/synthetic.py) is
copied into two homes. Day 0 runs in both (the incremental chain's first run is a full fit), then days 1..7 each
run in both, in alternating order (load from other processes hits both alike). Per day and home:

- events read by aggregate: rows (its ``events_read``) and bytes as BigQuery would bill them (logical bytes of
  the columns each query reads: 2 + length per STRING, 8 per TIMESTAMP; per-day figures from the generated
  table). A full scan reads the window twice (stats and interactions queries); an incremental day reads the
  census (``ts`` of the window; nothing when it comes from partition metadata) plus the recomputed days once;
- fit time (train's evaluate + fit), users rescored against every item (candidates' ``users_recomputed``) and
  refreshed (``users_refreshed``: their parent list and the day's hot items, incremental.quiet_users);
- whole-run wall time and peak memory (``reco run`` as one child process, bench/measure.py), and each step's
  own time from its commit marker;
- next-day nDCG@10 (bench/evaluate.py's holdout: the day after the session date, new items only);
- the yardstick for that nDCG: the last day's full run again with other ``model.seed`` values (``--seeds``). Two
  full fits of the same day differ by about as much as the 0.98x target allows, so a day's ratio is read
  against this spread, not against 1.0.

    python -m bench.incremental                      # 10M events in the window (make bench --incremental)
    python -m bench.incremental --size 1M --set incremental.iterations=2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb

from batch.config import load_environment, load_pipeline
from batch.context import Window
from batch.storage import ArtifactStore
from batch.summary import build_summary
from bench.evaluate import Holdout, read_recs
from bench.measure import reco_cmd, run_measured
from bench.synthetic import WINDOW_DAYS, generate_args, items_for, label, parse_size, users_for

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
PIPELINE = "demo"
DAYS = 7
STEPS = ("aggregate", "train", "candidates", "related", "export")


def log(msg: str) -> None:
    print(f"[incremental {datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


def reco(home: Path, *args: str, what: str) -> dict:
    """Run reco in ``home`` as one measured child process: wall time and peak memory."""
    env = {**os.environ, "RECO_HOME": str(home), "RECO_LOG_FORMAT": "json", "RECO_NO_PROGRESS": "1"}
    m = run_measured([*reco_cmd(), *args], env=env, cwd=str(ROOT))
    if not m.ok:
        raise RuntimeError(f"{what} failed (rc {m.returncode}):\n{m.stderr_tail[-2000:]}")
    log(f"{what}: {m.wall_s:.1f}s, peak {m.peak_mb:,.0f} MB")
    return {"wall_s": round(m.wall_s, 2), "peak_mb": round(m.peak_mb), "run_step_s": step_walls(m.stderr)}


def step_walls(log_lines: str) -> dict[str, float]:
    """Each step's wall time as ``reco run`` logs it ("  candidates [1/2]  done in  12.3s"), shards summed;
    this includes the step's gates, metric rows and (last step) the run report."""
    out: dict[str, float] = {}
    for m in re.finditer(r"\"message\": \"\s+(\w+)(?: \[\d+/\d+\])?\s+done in\s+([\d.]+)s", log_lines):
        out[m.group(1)] = round(out.get(m.group(1), 0.0) + float(m.group(2)), 2)
    return out


def day_bytes(db: str, table: str, timezone: str) -> dict[str, dict]:
    """Per event day (pipeline timezone): rows, logical bytes of all four columns and of ``ts`` alone."""
    con = duckdb.connect(db, read_only=True)
    rows = con.execute(
        f"""SELECT CAST(timezone(?, ts) AS DATE) AS day, count(*) AS n,
                   sum(8 + coalesce(2 + strlen(user_id), 0) + coalesce(2 + strlen(item_id), 0)
                       + coalesce(2 + strlen(event_type), 0)) AS bytes
            FROM {table} WHERE ts IS NOT NULL GROUP BY day""",
        [timezone],
    ).fetchall()
    con.close()
    return {d.isoformat(): {"rows": int(n), "bytes": int(b), "ts_bytes": 8 * int(n)} for d, n, b in rows}


def bytes_read(read: dict, window_days: list[str], per_day: dict[str, dict]) -> tuple[int, int]:
    """(billed bytes of aggregate's event queries, of which the census) (module docstring); undated rows are
    left out (a few)."""
    if read.get("mode") == "partials":
        # a census from partition metadata (BigQuery INFORMATION_SCHEMA.PARTITIONS) reads no event bytes
        scanned = read.get("census", "ts scan") == "ts scan"
        census = sum(per_day.get(d, {}).get("ts_bytes", 0) for d in window_days) if scanned else 0
        computed = sum(per_day.get(d, {}).get("bytes", 0) for d in read.get("days_computed") or {})
        return census + computed, census
    return 2 * sum(per_day.get(d, {}).get("bytes", 0) for d in window_days), 0


def figures(home: Path, dt: date, holdout: Holdout, measured: dict, window_days: list[str], per_day) -> dict:
    os.environ["RECO_HOME"] = str(home)
    env = load_environment("local")
    store = ArtifactStore(env.resolved_artifact_root())
    pipeline = load_pipeline(PIPELINE)
    s = build_summary(store, PIPELINE, dt, pipeline.candidates.shard_count)
    read = s.get("events_read") or {}
    timings = (s["steps"].get("train") or {}).get("timings") or {}
    counts = (s["steps"].get("candidates") or {}).get("counts") or {}
    drift = (s.get("incremental") or {}).get("drift_guard") or {}
    export = store.committed(PIPELINE, "export", dt, step="export")
    recs = read_recs(store.display(export.path("recommendations.parquet")))
    step_s = {}
    for name in STEPS:
        t = (s["steps"].get(name) or {}).get("timings") or {}
        step_s[name] = round(t.get("total_s", t.get("max_shard_s", 0)), 2)
    read_bytes, census_bytes = bytes_read(read, window_days, per_day)
    return {
        "kind": (s.get("incremental") or {}).get("kind", "full"),
        "reason": (s.get("incremental") or {}).get("reason", ""),
        "rows_read": read.get("rows_read"),
        "census_rows": read.get("census_rows", 0),
        "bytes_read": read_bytes,
        "census_bytes": census_bytes,
        "days_computed": sorted(read.get("days_computed") or {}) if "days_computed" in read else None,
        "fit_s": round(timings.get("evaluate_s", 0) + timings.get("fit_s", 0), 2),
        "users_rescored": counts.get("users_recomputed") or counts.get("users"),
        "users_refreshed": counts.get("users_refreshed", 0),
        "users": counts.get("users"),
        "overlap": (drift.get("overlap") or {}).get("mean"),
        "step_s": step_s,
        **measured,
        "ndcg@10": holdout.score(recs)["ndcg@10"],
    }


def run(size: int, work: Path, overrides: list[str], days: int = DAYS, seeds: int = 2) -> dict:
    end = datetime.now(UTC).date() - timedelta(days=2)  # every event in the past
    first = end - timedelta(days=days + 1)  # day 0; the last session date's next day is `end`
    generated_days = WINDOW_DAYS + days + 2  # day 0's window .. the last holdout day, plus a margin
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    reco(data, *generate_args(PIPELINE, size, generated_days, end), what="generate data")
    pipeline = load_pipeline(PIPELINE)
    db = str(data / "warehouse.duckdb")
    per_day = day_bytes(db, pipeline.source.events_table, pipeline.source.timezone)
    homes = {"incremental": work / "inc", "full": work / "full"}
    for home in homes.values():
        home.mkdir()
        shutil.copy(data / "warehouse.duckdb", home / "warehouse.duckdb")
    # both homes: a synthetic popularity swing must not stop the sequence at the model gate (which still judges
    # and reports; the drift guard still uses its tolerance)
    common = ["--set", "checks.model.metric.severity=warn"]
    sets = [*common, "--set", "incremental.enabled=true"]
    for o in overrides:
        sets += ["--set", o]
    rows = []
    for i in range(days + 1):
        dt = first + timedelta(days=i)
        w = Window.for_session(dt, pipeline.aggregate.lookback_days, 1, pipeline.source.timezone)
        window_days = [(dt - timedelta(days=k)).isoformat() for k in range(pipeline.aggregate.lookback_days)]
        holdout = Holdout(db, pipeline.source.events_table, w.start, w.end)
        day = {
            "dt": dt.isoformat(),
            "window_events": sum(per_day.get(d, {}).get("rows", 0) for d in window_days),
            "window_bytes": sum(per_day.get(d, {}).get("bytes", 0) for d in window_days),
        }
        order = list(homes) if i % 2 == 0 else list(reversed(homes))
        for name in order:
            extra = sets if name == "incremental" else common
            m = reco(
                homes[name],
                "run",
                "--pipeline",
                PIPELINE,
                "--date",
                dt.isoformat(),
                *extra,
                what=f"{dt} {name}",
            )
            day[name] = figures(homes[name], dt, holdout, m, window_days, per_day)
        rows.append(day)
        inc, full = day["incremental"], day["full"]
        log(
            f"{dt} {inc['kind']:<11} bytes {inc['bytes_read'] / full['bytes_read']:.1%}  fit {inc['fit_s']}/{full['fit_s']}s  "
            f"rescored {inc['users_rescored']}/{full['users_rescored']}  wall {inc['wall_s']}/{full['wall_s']}s  "
            f"ndcg {inc['ndcg@10']:.4f}/{full['ndcg@10']:.4f}  steps inc {inc['step_s']} full {full['step_s']}"
        )
    seed_runs = []
    base_seed = pipeline.model.seed
    for seed in range(base_seed + 1, base_seed + 1 + seeds):
        # the last day, full, again in the full home: only the model's seed differs (a date reruns safely)
        m = reco(
            homes["full"],
            "run",
            "--pipeline",
            PIPELINE,
            "--date",
            dt.isoformat(),
            *common,
            "--set",
            f"model.seed={seed}",
            what=f"{dt} full, model.seed={seed}",
        )
        f = figures(homes["full"], dt, holdout, m, window_days, per_day)
        seed_runs.append({"seed": seed, "ndcg@10": f["ndcg@10"], "wall_s": f["wall_s"]})
        log(
            f"{dt} full seed {seed}: ndcg {f['ndcg@10']:.4f} vs seed {base_seed} {day['full']['ndcg@10']:.4f}"
        )
    return {
        "size": label(size),
        "seed": base_seed,
        "seed_runs": seed_runs,
        "users": users_for(size),
        "items": items_for(size),
        "overrides": overrides,
        "cpus": os.cpu_count(),
        "days": rows,
    }


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def report(result: dict) -> str:
    days = result["days"]
    lookback = WINDOW_DAYS
    lines = [
        f"## Incremental vs full, {len(days) - 1}-day sequence ({result['size']} events per window: "
        f"{result['users']:,} users, {result['items']:,} items; {result['cpus']} cores)",
        "",
        f"Incremental overrides: {', '.join(['incremental.enabled=true', *result['overrides']])}.",
        "",
        "| day | kind | events read MB inc (census) / full (ratio) | fit s inc / full "
        "| users rescored inc (refreshed) / full "
        "| wall s inc / full (ratio) | next-day nDCG@10 inc / full (ratio) |",
        "|---|---|---|---|---|---|---|",
    ]
    for day in days:
        i, f = day["incremental"], day["full"]
        lines.append(
            f"| {day['dt']} | {i['kind']} | {i['bytes_read'] / 1e6:,.1f} ({i['census_bytes'] / 1e6:,.1f}) "
            f"/ {f['bytes_read'] / 1e6:,.1f} "
            f"({_ratio(i['bytes_read'], f['bytes_read']):.1%}) | {i['fit_s']} / {f['fit_s']} "
            f"| {i['users_rescored']:,} ({i.get('users_refreshed', 0):,}) / {f['users_rescored']:,} "
            f"| {i['wall_s']} / {f['wall_s']} "
            f"({_ratio(i['wall_s'], f['wall_s']):.0%}) | {i['ndcg@10']:.4f} / {f['ndcg@10']:.4f} "
            f"({_ratio(i['ndcg@10'], f['ndcg@10']):.3f}) |"
        )
    names = list(dict.fromkeys([*days[0]["full"]["run_step_s"], *days[-1]["incremental"]["run_step_s"]]))
    lines += [
        "",
        "Step wall times (s, as `reco run` prints them: shards summed, each step's gates, metric rows and, on the "
        "last step, the run report included; the rest is interpreter start and imports):",
        "",
    ]
    lines += ["| day | " + " | ".join(f"{s} inc / full" for s in [*names, "rest"]) + " |"]
    lines += ["|---|" + "---|" * (len(names) + 1)]
    for day in days:
        i, f = day["incremental"], day["full"]
        rest = [round(x["wall_s"] - sum(x["run_step_s"].values()), 1) for x in (i, f)]
        lines.append(
            f"| {day['dt']} | "
            + " | ".join(f"{i['run_step_s'].get(s, 0)} / {f['run_step_s'].get(s, 0)}" for s in names)
            + f" | {rest[0]} / {rest[1]} |"
        )
    inc_days = [d for d in days[1:] if d["incremental"]["kind"] == "incremental"]
    lines += ["", "Targets (days 1..7; the incremental days are those whose kind is incremental):", ""]
    if inc_days:
        worst_wall = max(_ratio(d["incremental"]["wall_s"], d["full"]["wall_s"]) for d in inc_days)
        # the bound: 1/lookback of the full run's reads (no day is restated in this sequence)
        worst_bytes = max(
            _ratio(d["incremental"]["bytes_read"], d["full"]["bytes_read"] / lookback) for d in inc_days
        )
        worst_data = max(
            _ratio(
                d["incremental"]["bytes_read"] - d["incremental"]["census_bytes"],
                d["full"]["bytes_read"] / lookback,
            )
            for d in inc_days
        )
        lines.append(
            f"- whole-run wall time <= 40 % of the full run on incremental days: worst "
            f"{worst_wall:.0%} ({'met' if worst_wall <= 0.4 else 'missed'})"
        )
        lines.append(
            f"- events read <= 1/{lookback} of a full scan (+ restated days, none here): worst "
            f"{worst_bytes:.2f}x that bound ({'met' if worst_bytes <= 1 else 'missed'}) with this run's census; "
            f"with the census from partition metadata (BigQuery, events partitioned by DAY on ts: no event "
            f"bytes) {worst_data:.2f}x ({'met' if worst_data <= 1 else 'missed'})"
        )
    worst_ndcg = min(_ratio(d["incremental"]["ndcg@10"], d["full"]["ndcg@10"]) for d in days[1:])
    lines.append(
        f"- next-day nDCG@10 >= 0.98x the full run every day: worst {worst_ndcg:.3f}x "
        f"({'met' if worst_ndcg >= 0.98 else 'missed'})"
    )
    seed_runs = result.get("seed_runs") or []
    if seed_runs:
        last = days[-1]["full"]["ndcg@10"]
        spread = ", ".join(
            f"seed {r['seed']}: {r['ndcg@10']:.4f} ({_ratio(r['ndcg@10'], last):.3f}x)" for r in seed_runs
        )
        lines.append(
            f"- yardstick: the full run of {days[-1]['dt']} again with other model seeds scores {spread} of "
            f"the seed-{result['seed']} full run ({last:.4f}), the same code and data"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.incremental", description=__doc__.split("\n")[0])
    p.add_argument("--size", default="10M", help="events per 28-day window, e.g. 1M, 10M (default 10M)")
    p.add_argument("--days", type=int, default=DAYS, help="days after day 0 (default 7)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override for the incremental home"
    )
    p.add_argument(
        "--seeds", type=int, default=2, help="full reruns of the last day with other model seeds (default 2)"
    )
    p.add_argument("--workdir", default=None, help="where the homes go (default: a temp dir, removed after)")
    args = p.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="reco-bench-inc-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        result = run(parse_size(args.size), work, args.set, args.days, args.seeds)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    text = report(result)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    (RESULTS / f"incremental-{result['size']}-{stamp}.json").write_text(json.dumps(result, indent=2))
    (RESULTS / f"incremental-{result['size']}-{stamp}.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
