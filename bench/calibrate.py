"""Per-unit costs for the capacity plan and ``candidates.method: auto``: writes batch/calibration.json.

    python -m bench.calibrate [--items 200000] [--out batch/calibration.json] [--quick] [--steps-only]

Core operations: nanoseconds of one core per unit of work, measured here as the process's CPU time (all
threads) / units: on a shared machine, wall time x cores would charge other jobs' time slices to the step.

- exact_scoring: models.topk at D=32 and D=64 at the candidates step's shape (calls of candidates.batch_size
  users over a catalogue the size of the 10M-event data's, ~50k items, through the model's own batch size):
  solves select_ns (per user-item) and matmul_ns (per user-item-factor).
- ivf: models.ann IVF-flat on structured factors (bench/ann_data.py): kmeans_ns per (point x centroid x
  factor) from the build, scan_ns per (scanned vector x factor) and query_ns from the search, and the smallest
  nprobe of 8, 16, 32, 64, 128 whose recall@50 against exact reaches 0.95.
- als: implicit ALS, 3 iterations on two random matrices of different shape: nnz_ns and rows_ns.
- export.row_bytes: Arrow bytes per exported row (the export step's memory).

Whole steps (``steps``): the real ``reco step`` processes of bench/run.py (same data generator, overrides and
2 shards) at two sizes, 1M and 3M events (large enough that the per-unit cost is the slope at scale: aggregate
and export grow faster than linearly from 100k); per step a fixed part (fixed_s wall, fixed_core_s CPU), the
rest per unit beyond the core operation's formula (unit_ns per interaction, user, item or row), fitted so that
batch/capacity.py's ``step_cost`` reproduces the measured processes. After the exact run, the index and
candidates steps run again with ``candidates.method=ann`` (IVF forced, gate relaxed): the index step's costs
and candidates' ANN costs (``steps.candidates.ann``) come from those.
``--steps-only`` re-measures only these and keeps the core-operation figures of the existing file; ``--keep
ivf,als`` keeps the named ones.

The ``published`` section is carried over from the existing file (figures not measurable here, with sources).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from batch.capacity import (
    CALIBRATION_PATH,
    SHARDED_STEPS,
    STEPS,
    PlanInput,
    core_operation_seconds,
    step_units,
)
from batch.checks.ann import recall_at_n
from batch.config import load_pipeline
from bench.run import FACTORS, ITERATIONS, PIPELINE, STEP_SHARDS, Bench, N, label, parse_size
from models import create_model
from models.ann import AnnParams, build_index
from models.topk import available_cores, topk_scores

STEP_SIZES = "1M,3M"
CORE_OPERATIONS = ("exact_scoring", "ivf", "als", "export")
EXACT_ITEMS = 50_000  # exact scoring's catalogue: about the 10M-event data's (45k items)
# the ANN calibration runs: force the IVF build at sizes whose catalogue is under exact_below so that it is
# measured, and time the index gate whatever the recall (a failed gate ends the step with the same work done)
ANN_SETS = ["candidates.method=ann", "candidates.ann.exact_below=0", "checks.index.min_recall=0"]


def _best(fn, repeats: int = 2) -> float:
    """Best-of CPU seconds of this process (all its threads): core-seconds of the work itself, which time
    slicing on a shared machine does not inflate the way it inflates wall time."""
    best = float("inf")
    for _ in range(repeats):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best


def exact_costs(cores: int, batch_size: int, items: int, calls: int = 4) -> dict:
    """Per-pair costs of exact scoring as the candidates step runs it: ``calls`` calls of ``batch_size`` users
    (its user blocks) over ``items``, each through topk_scores at the model's batch size and threads."""
    rng = np.random.default_rng(1)
    per = {}
    for d in (32, 64):
        q = rng.standard_normal((batch_size * calls, d), dtype=np.float32)
        v = rng.standard_normal((items, d), dtype=np.float32)

        def run(q=q, v=v):
            for start in range(0, len(q), batch_size):
                topk_scores(q[start : start + batch_size], v, 50)

        per[d] = _best(run) * 1e9 / (len(q) * items)
    matmul = max((per[64] - per[32]) / 32, 1e-4)
    return {
        "select_ns": round(max(per[64] - 64 * matmul, 0.0), 5),
        "matmul_ns": round(matmul, 6),
        "users": batch_size * calls,
        "batch_size": batch_size,
        "items": items,
    }


def ivf_costs(cores: int, items: int, queries: int) -> dict:
    from bench.ann_data import structured_factors

    users, item_f = structured_factors(items, 100_000, 64)
    q = users[:queries]
    truth, _ = topk_scores(q, item_f, 50)
    t, wall = time.process_time(), time.perf_counter()
    index = build_index(item_f, params=AnnParams(kind="ivf_flat"))
    build_s, build_wall = time.process_time() - t, time.perf_counter() - wall
    nlist = index.params.nlist
    iters = index.params.kmeans_iterations
    units = iters * min(items, 64 * nlist) * nlist * 64 + items * nlist * 64
    chosen, rows = None, []
    for nprobe in (8, 16, 32, 64, 128):
        index.params = AnnParams(**{**index.params.to_dict(), "nprobe": nprobe})
        got = None

        def run():
            nonlocal got
            got = index.search(q, 50)[0]

        s = _best(run)
        recall = float(np.nanmean(recall_at_n(got, truth)))
        scanned = nlist + nprobe * items / nlist
        rows.append({"nprobe": nprobe, "seconds": s, "recall": recall, "scanned": scanned})
        if chosen is None and recall >= 0.95:
            chosen = rows[-1]
    chosen = chosen or rows[-1]
    scan_ns = chosen["seconds"] * 1e9 / (queries * chosen["scanned"] * 64)
    return {
        "nprobe": chosen["nprobe"],
        "recall_at_nprobe": round(chosen["recall"], 4),
        "calibrated_items": items,
        "calibrated_nlist": nlist,
        "kmeans_iterations": iters,
        "kmeans_ns": round(build_s * 1e9 / units, 6),
        "scan_ns": round(scan_ns, 5),
        "query_ns": 0.0,
        "exact_below": AnnParams().exact_below,
        "min_speedup": 2.0,
        "build_cpu_seconds": round(build_s, 2),
        "build_wall_seconds": round(build_wall, 2),
        "sweep": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
    }


def als_costs(cores: int, quick: bool) -> dict:
    rng = np.random.default_rng(2)
    scale = 1 if quick else 2
    shapes = [
        (20_000 * scale, 5_000 * scale, 1_000_000 * scale),
        (100_000 * scale, 20_000 * scale, 300_000 * scale),
    ]
    d, iters = 64, 3
    times = []
    for u, i, nnz in shapes:
        m = sp.csr_matrix(
            (rng.random(nnz, dtype=np.float32) + 1, (rng.integers(0, u, nnz), rng.integers(0, i, nnz))),
            shape=(u, i),
        )
        m.sum_duplicates()
        model = create_model("als", factors=d, iterations=iters, seed=1)
        times.append((m.nnz, u + i, _best(lambda m=m, model=model: model.fit(m), 1) * 1e9 / iters))
    # t = nnz * d * a + rows * d^2 * b, two equations
    (n1, r1, t1), (n2, r2, t2) = times
    a_mat = np.array([[n1 * d, r1 * d * d], [n2 * d, r2 * d * d]], dtype=float)
    a, b = np.linalg.solve(a_mat, np.array([t1, t2]))
    if a <= 0 or b <= 0:  # noisy machine: fall back to attributing everything to the nnz term
        a, b = t1 / (n1 * d), 0.0
    return {"nnz_ns": round(float(a), 6), "rows_ns": round(float(b), 7), "factors": d}


def export_row_bytes(rows: int = 100_000) -> dict:
    """Arrow bytes per exported row (user_id, item_id, rank, score, source): the export step's memory."""
    rng = np.random.default_rng(4)
    table = pa.table(
        {
            "user_id": pa.array(np.char.add("u", (np.arange(rows) // 50).astype(str))),
            "item_id": pa.array(np.char.add("i", rng.integers(0, 50_000, rows).astype(str))),
            "rank": pa.array(np.tile(np.arange(1, 51, dtype=np.int32), rows // 50 + 1)[:rows]),
            "score": pa.array(rng.random(rows, dtype=np.float32)),
            "source": pa.array(np.where(rng.random(rows) < 0.1, "popular", "personal")),
        }
    )
    return {"row_bytes": round(table.nbytes / rows, 1)}


# -- whole steps -----------------------------------------------------------------------------------------------


def plan_input(stats: dict, eval_users: int | None = None) -> PlanInput:
    """The plan's input for a measured run: the aggregate step's users, items, interactions, the users the
    train step evaluated, and the bench's model overrides (bench/run.py)."""
    cfg = load_pipeline(PIPELINE, "local")
    ev = cfg.evaluation
    refit = (ev.refit_iterations or ITERATIONS) if ev.enabled else 0
    return PlanInput.create(
        stats["users"],
        stats["items"],
        stats["interactions"],
        FACTORS,
        n=N,
        related_n=cfg.candidates.related_n,
        iterations=ITERATIONS,
        refit_iterations=refit,
        batch_size=cfg.candidates.batch_size,
        eval_users=eval_users if ev.enabled else 0,
    )


def bench_data(size: int, work: Path, reuse: bool) -> Bench:
    """bench/run.py's generated data at ``size`` events (``reuse``: what a previous run left in ``work``)."""
    b = Bench(size, work, argparse.Namespace())
    b.generate(reuse=reuse)
    return b


def measure_steps(
    b: Bench, ann: bool, sets: list[str] | None = None, names: tuple[str, ...] = ()
) -> tuple[PlanInput, dict[str, dict]]:
    """The plan's input and, per step, one process's wall and CPU seconds (sharded steps: the mean shard) of a
    bench/run.py per-step run on ``b``'s data. ``ann``: the run with ``candidates.method=ann`` (the index step
    included; its recall gate does not stop the run, so that every step is measured), or ``sets`` given;
    ``names``: only these steps (on the data an earlier run of the same session left)."""
    if sets is None:
        sets = [ANN_SETS[0], ANN_SETS[2]] if ann else []
    rows = b.steps(sets, key="ann_steps" if ann else "steps", names=names)
    train = getattr(b, "_train_result", None) or {}
    p = plan_input(b._agg_result["stats"], train.get("metrics", {}).get("model", {}).get("users_evaluated"))
    measured = {}
    for r in rows:
        n = len(r["shards"]) if r["shards"] else 1
        measured[r["step"]] = {"wall_s": r["wall_s"] / n, "cpu_s": r["cpu_s"] / n, "processes": n}
    return p, measured


def step_points(sizes: list[int], work: Path, reuse: bool, cal: dict) -> dict[str, list[dict]]:
    """Per step (and ``candidates.ann``), one point per size: units and core-operation seconds of one process,
    measured CPU and wall. The exact run, then index and candidates again with ANN forced."""
    points: dict[str, list[dict]] = {s: [] for s in (*STEPS, "candidates.ann")}
    for size in sizes:
        b = bench_data(size, work, reuse)
        p, exact = measure_steps(b, ann=False)
        _, ann = measure_steps(b, ann=True, sets=ANN_SETS, names=("index", "candidates"))
        runs = [(step, "exact", m) for step, m in exact.items()]
        runs += [(step if step == "index" else f"{step}.ann", "ann", m) for step, m in ann.items()]
        for key, method, m in runs:
            step = key.split(".")[0]
            shards = m["processes"] if step in SHARDED_STEPS else 1
            unit, units = step_units(step, p, shards)
            points[key].append(
                {
                    "size": label(size),
                    "unit": unit,
                    "units": round(units),
                    "core_op_s": round(core_operation_seconds(step, p, cal, method, shards), 3),
                    "cpu_s": round(m["cpu_s"], 3),
                    "wall_s": round(m["wall_s"], 3),
                }
            )
    return points


def fit_step(points: list[dict], cores: int) -> dict:
    """fixed_core_s + unit_ns from CPU time (rest = CPU - core operation = fixed + units x ns, least squares over
    the sizes; a negative slope or intercept, i.e. noise, is clamped to 0 and the other term refitted), then
    fixed_s: the mean wall left once the rest (one core) and the core operation (all cores) are taken off, so
    it holds the process start as this machine, load included, ran it."""
    units = np.array([pt["units"] for pt in points], float)
    op = np.array([pt["core_op_s"] for pt in points], float)
    cpu = np.array([pt["cpu_s"] for pt in points], float)
    wall = np.array([pt["wall_s"] for pt in points], float)
    rest = cpu - op
    fixed_core, per_unit = np.linalg.lstsq(np.c_[np.ones_like(units), units], rest, rcond=None)[0]
    if per_unit < 0:
        fixed_core, per_unit = rest.mean(), 0.0
    if fixed_core < 0:
        fixed_core, per_unit = 0.0, float(rest @ units / (units @ units))
    fixed_s = max(0.0, float((wall - units * per_unit - op / cores).mean()))
    return {
        "fixed_s": round(fixed_s, 3),
        "fixed_core_s": round(float(fixed_core), 3),
        "unit": points[0]["unit"],
        "unit_ns": round(float(per_unit) * 1e9, 2),
        "points": points,
    }


def step_costs(sizes: list[int], work: Path, reuse: bool, cal: dict, cores: int) -> dict:
    points = step_points(sizes, work, reuse, cal)
    steps = {step: fit_step(points[step], cores) for step in STEPS}
    steps["candidates"]["ann"] = fit_step(points["candidates.ann"], cores)
    return {"sizes": [label(s) for s in sizes], "shards": STEP_SHARDS, "cores": cores, **steps}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.calibrate", description=__doc__.split("\n")[0])
    p.add_argument("--items", type=int, default=1_000_000, help="catalogue for the IVF calibration")
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument(
        "--quick", action="store_true", help="small sizes (minutes): 200k items, 1/2 the ALS sizes"
    )
    p.add_argument("--step-sizes", default=STEP_SIZES, help="events of the whole-step runs (two or more)")
    p.add_argument(
        "--steps-only", action="store_true", help="re-measure the whole steps only; keep the other figures"
    )
    p.add_argument(
        "--keep",
        default="",
        help=f"core-operation figures to keep from the existing file (comma list of {', '.join(CORE_OPERATIONS)})",
    )
    p.add_argument("--workdir", default=None, help="where the step runs' data go (default: a temp dir)")
    p.add_argument(
        "--reuse-data", action="store_true", help="keep data a previous run generated in --workdir"
    )
    p.add_argument("--out", default=str(CALIBRATION_PATH))
    args = p.parse_args(argv)
    if args.quick:
        args.items = min(args.items, 200_000)
    sizes = [parse_size(x) for x in args.step_sizes.split(",")]
    if len(sizes) < 2:
        p.error("--step-sizes needs two sizes or more: the fit has a fixed and a per-unit term")
    cores = available_cores()
    out_path = Path(args.out)
    old = json.loads(out_path.read_text()) if out_path.exists() else {}
    keep = list(CORE_OPERATIONS) if args.steps_only else [k for k in args.keep.split(",") if k]
    if unknown := set(keep) - set(CORE_OPERATIONS):
        p.error(f"--keep: unknown {', '.join(sorted(unknown))}; known: {', '.join(CORE_OPERATIONS)}")
    if missing := [k for k in keep if k not in old]:
        p.error(
            f"{out_path} has no {', '.join(missing)} to keep: measure them (leave out --keep/--steps-only)"
        )
    started = time.perf_counter()
    cal = {
        "measured_on": {
            "date": datetime.now(UTC).strftime("%Y-%m-%d"),
            "cpu": platform.processor() or platform.machine(),
            "cores": cores,
            "note": "shared machine (other jobs running): per-core rates are conservative",
        }
    }
    if keep:  # per kept section, the day it was measured
        was = old.get("measured_on", {})
        cal["measured_on"]["kept"] = {
            k: was.get("kept", {}).get(k) or was.get("core_operations_from") or was.get("date") for k in keep
        }
    measure = {
        "exact_scoring": lambda: exact_costs(
            cores,
            load_pipeline(PIPELINE, "local").candidates.batch_size,
            20_000 if args.quick else EXACT_ITEMS,
        ),
        "ivf": lambda: ivf_costs(cores, args.items, args.queries),
        "als": lambda: als_costs(cores, args.quick),
        "export": export_row_bytes,
    }
    for name in CORE_OPERATIONS:
        cal[name] = old[name] if name in keep else measure[name]()
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="reco-calibrate-"))
    try:
        cal["steps"] = step_costs(sizes, work, args.reuse_data, cal, cores)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    cal["published"] = old.get("published", {})
    cal["measured_on"]["seconds"] = round(time.perf_counter() - started, 1)
    out_path.write_text(json.dumps(cal, indent=1) + "\n")
    print(json.dumps({k: v for k, v in cal.items() if k != "published"}, indent=1))
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
