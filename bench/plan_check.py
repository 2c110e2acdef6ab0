"""`reco plan`'s per-step prediction against a measured run: `python -m bench.plan_check [--size 10M] [--ann]`.

Runs bench/run.py's per-step measurement (`reco step` per step, 2 shards for candidates and related) on its
generated data at ``--size`` events, builds the plan's input from the aggregate step's users, items and
interactions, and prints per step (one process; sharded steps: the mean shard) the plan's wall seconds on this
machine's cores (batch/capacity.py ``step_cost``, the model ``reco plan`` lays out on the cloud classes) against
the measured wall, and the same for CPU seconds, with the ratio and met/missed for the target (within 30 %).
With ``--ann`` it also runs the same steps with ``candidates.method=ann`` and prints the next-day nDCG@10 of
both exports on the generator's holdout day (bench/evaluate.py). Writes bench/results/plan-check-<size>.json;
``--replan that.json`` prints its measured steps against the plan of the current calibration without running.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from batch.capacity import SHARDED_STEPS, PlanInput, load_calibration, step_cost
from batch.storage import ArtifactStore
from bench.calibrate import bench_data, measure_steps
from bench.evaluate import Holdout, read_recs
from bench.run import PIPELINE, RESULTS, Bench, label, parse_size
from models.topk import available_cores

TARGET = 0.30  # the "within 30 % per step"


def next_day_ndcg(b: Bench) -> float:
    """nDCG@10 of the committed export of ``b``'s session on the day after it (the generator's holdout)."""
    hold = Holdout(b.db, b.events_table, b.window.start, b.window.end)
    export = ArtifactStore(str(b.home / "artifacts")).committed(PIPELINE, "export", b.session, step="export")
    return hold.score(read_recs(export.path("recommendations.parquet")))["ndcg@10"]


def compare(b: Bench, method: str, cal: dict, cores: int) -> dict:
    p, measured = measure_steps(b, ann=method == "ann")
    return {
        "method": method,
        "input": p.__dict__,
        "steps": predict(p, measured, method, cal, cores),
        "ndcg@10": next_day_ndcg(b),
    }


def predict(p: PlanInput, measured: dict[str, dict], method: str, cal: dict, cores: int) -> list[dict]:
    """Per measured step, the plan's wall and CPU seconds for one process next to the measured ones."""
    rows = []
    for step, m in measured.items():
        shards = m["processes"] if step in SHARDED_STEPS else 1
        uses_method = step == "candidates" or step == "index"
        cost = step_cost(step, p, cal, method if uses_method else "exact", shards)
        predicted = cost.wall_seconds(cores)
        rows.append(
            {
                "step": step,
                "method": method if uses_method else "-",
                "processes": m["processes"],
                "predicted_wall_s": round(predicted, 2),
                "measured_wall_s": round(m["wall_s"], 2),
                "wall_ratio": round(predicted / m["wall_s"], 3),
                "predicted_cpu_s": round(cost.core_seconds, 2),
                "measured_cpu_s": round(m["cpu_s"], 2),
                "cpu_ratio": round(cost.core_seconds / m["cpu_s"], 3) if m["cpu_s"] else None,
                "met": abs(predicted / m["wall_s"] - 1) <= TARGET,
                "cpu_met": abs(cost.core_seconds / m["cpu_s"] - 1) <= TARGET if m["cpu_s"] else False,
            }
        )
    return rows


def replan(saved: dict, cal: dict) -> list[dict]:
    """A saved run's measured steps against the plan from ``cal`` (no step is run): for a new calibration."""
    out = []
    for result in saved["results"]:
        p = PlanInput(**result["input"])
        measured = {
            r["step"]: {
                "wall_s": r["measured_wall_s"],
                "cpu_s": r["measured_cpu_s"],
                "processes": r["processes"],
            }
            for r in result["steps"]
        }
        steps = predict(p, measured, result["method"], cal, saved["cores"])
        out.append({**result, "steps": steps})
    return out


def table(result: dict, cores: int) -> str:
    lines = [
        f"plan vs measured, candidates.method={result['method']} ({cores} cores; one process, sharded steps: "
        "the mean shard)",
        f"{'step':<11} {'method':<6} {'pred wall':>9} {'meas wall':>9} {'ratio':>6} {'pred CPU':>8} "
        f"{'meas CPU':>8} {'ratio':>6}  target",
    ]
    for r in result["steps"]:
        lines.append(
            f"{r['step']:<11} {r['method']:<6} {r['predicted_wall_s']:>9.1f} {r['measured_wall_s']:>9.1f} "
            f"{r['wall_ratio']:>6.2f} {r['predicted_cpu_s']:>8.1f} {r['measured_cpu_s']:>8.1f} "
            f"{r['cpu_ratio']:>6.2f}  wall {'met' if r['met'] else 'MISSED'}, "
            f"CPU {'met' if r.get('cpu_met') else 'MISSED'}"
        )
    for what, key in (("wall", "met"), ("CPU", "cpu_met")):
        met = sum(bool(r.get(key)) for r in result["steps"])
        lines.append(f"within {TARGET:.0%} of the measured {what}: {met}/{len(result['steps'])} steps")
    lines.append(f"next-day nDCG@10 of the export: {result['ndcg@10']:.4f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.plan_check", description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="10M", help="events (bench/run.py's generator)")
    ap.add_argument(
        "--ann", action="store_true", help="also run with candidates.method=ann, nDCG@10 vs exact"
    )
    ap.add_argument("--calibration", default=None, help="default: batch/calibration.json")
    ap.add_argument(
        "--replan",
        default=None,
        metavar="JSON",
        help="no run: a saved plan-check-<size>.json's measured steps against the current calibration's plan",
    )
    ap.add_argument("--workdir", default=None, help="where the data go (default: a temp dir, removed after)")
    ap.add_argument(
        "--reuse-data", action="store_true", help="keep data a previous run generated in --workdir"
    )
    args = ap.parse_args(argv)
    size = parse_size(args.size)
    cal = load_calibration(args.calibration)
    if args.replan:
        saved = json.loads(Path(args.replan).read_text())
        for result in replan(saved, cal):
            print(table(result, saved["cores"]) + "\n")
        return 0
    cores = available_cores()
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="reco-plan-check-"))
    results = []
    try:
        b = bench_data(size, work, args.reuse_data)
        for method in ("exact", "ann") if args.ann else ("exact",):
            results.append(compare(b, method, cal, cores))
            print(table(results[-1], cores) + "\n", flush=True)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    if len(results) == 2:
        exact, ann = results[0]["ndcg@10"], results[1]["ndcg@10"]
        print(f"next-day nDCG@10: exact {exact:.4f}, ann {ann:.4f}, ann / exact {ann / exact:.3f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"plan-check-{label(size)}.json"
    out.write_text(
        json.dumps({"size": label(size), "cores": cores, "results": results}, indent=1, default=str)
    )
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
