"""ANN candidates vs our exact scoring (issue 10's target): users/s, recall@N, index build time and memory.

    python -m bench.ann_candidates [--items 1000000] [--users 100000] [--factors 64] [-n 50] [--exact-users U]

Structured factors (bench/ann_data.py). In this process, interleaved: exact top-N (models.topk, all cores) and
the models.ann index (default parameters: IVF-flat, nlist and nprobe from models.ann) for the same users; recall@N
of the index against exact per user. The exact side can be timed on a prefix of the users (--exact-users) and
recall computed on it; users/s is per method. The index build runs in a child process (bench/measure.py) for its
peak memory, and once here for the search. Target: >= 10x the exact users/s at recall@50 >= 0.95, build < 5 min on
2 cores. Prints one JSON line (the last line).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from batch.checks.ann import recall_at_n
from bench.ann_data import structured_factors
from bench.measure import run_measured
from models.ann import build_index
from models.topk import available_cores, topk_scores


def build_child(args) -> None:
    _, items = structured_factors(args.items, args.users, args.factors, verbose=False)
    base = run_rss_mb()
    t = time.perf_counter()
    index = build_index(items)
    print(json.dumps({"build_s": time.perf_counter() - t, "rss_before_mb": base, **index.describe()}))


def run_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ann_candidates", description=__doc__.split("\n")[0])
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--factors", type=int, default=64)
    p.add_argument("-n", type=int, default=50)
    p.add_argument(
        "--exact-users", type=int, default=None, help="time exact on this many users (default: all)"
    )
    p.add_argument("--build-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.build_child:
        build_child(args)
        return 0
    users, items = structured_factors(args.items, args.users, args.factors)
    cmd = [sys.executable, "-m", "bench.ann_candidates", "--build-child", "--items", str(args.items)]
    cmd += ["--users", str(args.users), "--factors", str(args.factors)]
    m = run_measured(cmd, cwd=str(Path(__file__).resolve().parent.parent))
    if not m.ok:
        print(m.stderr_tail, file=sys.stderr)
        return 1
    child = json.loads(m.stdout.strip().splitlines()[-1])

    index = build_index(items)
    t = time.perf_counter()
    ann_ids, _ = index.search(users, args.n)
    ann_s = time.perf_counter() - t
    k = min(args.exact_users or args.users, args.users)
    t = time.perf_counter()
    exact_ids, _ = topk_scores(users[:k], items, args.n)
    exact_s = time.perf_counter() - t
    recall = recall_at_n(ann_ids[:k], exact_ids)
    out = {
        "items": args.items,
        "users": args.users,
        "factors": args.factors,
        "n": args.n,
        "cores": available_cores(),
        "index": {k_: child[k_] for k_ in ("kind", "params", "library", "index_bytes") if k_ in child},
        "build_s": round(child["build_s"], 1),
        "build_peak_mb": round(m.peak_mb),
        "build_process_before_mb": round(child["rss_before_mb"]),
        "ann_users_per_s": round(args.users / ann_s, 1),
        "exact_users_per_s": round(k / exact_s, 1),
        "exact_users_timed": k,
        "speedup": round((args.users / ann_s) / (k / exact_s), 2),
        "recall_at_n": round(float(np.nanmean(recall)), 4),
        "recall_p05": round(float(np.nanpercentile(recall, 5)), 4),
        "targets": {"speedup >= 10": None, "recall >= 0.95": None, "build < 300 s": None},
    }
    out["targets"] = {
        "speedup >= 10": out["speedup"] >= 10,
        "recall >= 0.95": out["recall_at_n"] >= 0.95,
        "build < 300 s": out["build_s"] < 300,
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
