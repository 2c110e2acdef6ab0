"""ANN library comparison for maximum inner product on MF factors from this platform (docs/ann.md).

    python -m bench.ann_compare [--items 1000000] [--queries 2000] [--factors 64] [--only faiss-ivf,usearch-l2]

Factors: bench/ann_data.py (the platform's ALS on its synthetic traffic, item factors resampled to --items).
Ground truth: exact top-50 by our blocked scoring (models.topk), seen-filtering off. Each contender runs in its
own child process (bench/measure.py): build time, peak memory of the process (factors included: the
"factors only" row is the floor), then for each search setting users/s over --queries users (one batch call,
all cores) and recall@50 against exact. Libraries that are not installed are listed as such.

IVF cells: models.ann.default_nlist (about 4 sqrt(items): 4,096 at 1M, 2,048 at 200k).
Contenders: faiss IVF-flat and IVF-PQ (+ exact re-rank) on inner product, faiss HNSW on inner product and on the
MIPS->L2 transform (one extra coordinate, Bachrach et al. 2014), hnswlib and usearch the same two ways, ScaNN
(tree + asymmetric hashing, dot product). Writes bench/results/ann-compare-<stamp>.json and prints a table.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.measure import run_measured

RESULTS = Path(__file__).resolve().parent / "results"
N = 50

# name -> (library, build params, search settings)
CONTENDERS: dict[str, tuple[str, dict, list[dict]]] = {
    "factors-only": ("none", {}, []),
    "faiss-ivf-flat": ("faiss", {"kind": "ivf_flat"}, [{"nprobe": p} for p in (8, 16, 32, 64)]),
    "faiss-ivf-pq": (
        "faiss",
        {"kind": "ivf_pq", "pq_m": 32, "refine_factor": 4},
        [{"nprobe": p} for p in (16, 32, 64)],
    ),
    "faiss-hnsw-ip": ("faiss-raw-hnsw", {"m": 32, "ef_construction": 80}, [{"ef": e} for e in (128, 512)]),
    "faiss-hnsw-l2": (
        "faiss",
        {"kind": "hnsw", "hnsw_m": 32, "ef_construction": 80},
        [{"ef_search": e} for e in (64, 128, 256)],
    ),
    "hnswlib-ip": (
        "hnswlib",
        {"space": "ip", "m": 32, "ef_construction": 80},
        [{"ef": e} for e in (128, 512)],
    ),
    "hnswlib-l2": (
        "hnswlib",
        {"space": "l2", "m": 32, "ef_construction": 80},
        [{"ef": e} for e in (64, 128, 256)],
    ),
    "usearch-ip": (
        "usearch",
        {"metric": "ip", "m": 32, "ef_construction": 80},
        [{"ef": e} for e in (128, 512)],
    ),
    "usearch-l2": (
        "usearch",
        {"metric": "l2sq", "m": 32, "ef_construction": 80},
        [{"ef": e} for e in (64, 128, 256)],
    ),
    "scann": ("scann", {"leaves": 2000}, [{"leaves_to_search": s} for s in (50, 100, 200)]),
}


def _augment(items: np.ndarray) -> np.ndarray:
    sq = np.einsum("ij,ij->i", items, items)
    extra = np.sqrt(np.maximum(sq.max() - sq, 0)).astype(np.float32)
    return np.ascontiguousarray(np.hstack([items, extra[:, None]]))


def _query_aug(q: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.hstack([q, np.zeros((len(q), 1), np.float32)]))


def run_one(name: str, items: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> dict:
    """Build one contender and sweep its search settings (runs inside the child process)."""
    from batch.checks.ann import recall_at_n

    lib, build, settings = CONTENDERS[name]
    threads = len(os.sched_getaffinity(0))
    out: dict = {"name": name, "library": lib, "build_params": build, "searches": []}
    if lib == "none":
        return out
    t = time.perf_counter()
    if lib == "faiss":
        from models.ann import AnnParams, build_index

        index = build_index(items, params=AnnParams(**build))
        out["version"] = index.build_info["library"]

        def search(s):
            index.params = AnnParams(**{**index.params.to_dict(), **s})
            return index.search(queries, N)[0]
    elif lib == "faiss-raw-hnsw":
        import faiss

        idx = faiss.IndexHNSWFlat(items.shape[1], build["m"], faiss.METRIC_INNER_PRODUCT)
        idx.hnsw.efConstruction = build["ef_construction"]
        idx.add(items)
        out["version"] = f"faiss {faiss.__version__}"

        def search(s):
            return idx.search(queries, N, params=faiss.SearchParametersHNSW(efSearch=s["ef"]))[1]
    elif lib == "hnswlib":
        import hnswlib

        data = items if build["space"] == "ip" else _augment(items)
        q = queries if build["space"] == "ip" else _query_aug(queries)
        idx = hnswlib.Index(space=build["space"], dim=data.shape[1])
        idx.init_index(
            max_elements=len(data), M=build["m"], ef_construction=build["ef_construction"], random_seed=1
        )
        idx.add_items(data, num_threads=threads)
        out["version"] = f"hnswlib {importlib.metadata.version('hnswlib')}"

        def search(s):
            idx.set_ef(max(s["ef"], N))
            return idx.knn_query(q, k=N, num_threads=threads)[0].astype(np.int64)
    elif lib == "usearch":
        import usearch
        from usearch.index import Index

        data = items if build["metric"] == "ip" else _augment(items)
        q = queries if build["metric"] == "ip" else _query_aug(queries)
        idx = Index(
            ndim=data.shape[1],
            metric=build["metric"],
            dtype="f32",
            connectivity=build["m"],
            expansion_add=build["ef_construction"],
        )
        idx.add(np.arange(len(data)), data, threads=threads)
        out["version"] = f"usearch {usearch.__version__}"

        def search(s):
            idx.expansion_search = s["ef"]
            return np.asarray(idx.search(q, N, threads=threads).keys, dtype=np.int64)
    elif lib == "scann":
        import scann

        searcher = (
            scann.scann_ops_pybind.builder(items, N, "dot_product")
            .tree(
                num_leaves=build["leaves"],
                num_leaves_to_search=100,
                training_sample_size=min(250_000, len(items)),
            )
            .score_ah(2, anisotropic_quantization_threshold=0.2)
            .reorder(200)
            .build()
        )
        out["version"] = f"scann {importlib.metadata.version('scann')}"

        def search(s):
            return searcher.search_batched_parallel(queries, leaves_to_search=s["leaves_to_search"])[
                0
            ].astype(np.int64)
    else:
        raise ValueError(lib)
    out["build_s"] = round(time.perf_counter() - t, 2)
    for s in settings:
        search(s)  # warm-up on the first call is part of the setting's first run; repeat and keep the best
        best = float("inf")
        for _ in range(2):
            t = time.perf_counter()
            got = search(s)
            best = min(best, time.perf_counter() - t)
        recall = float(np.nanmean(recall_at_n(np.asarray(got), truth)))
        out["searches"].append(
            {"setting": s, "users_per_s": round(len(queries) / best, 1), "recall_at_50": round(recall, 4)}
        )
    return out


def _data(items: int, queries: int, factors: int):
    from bench.ann_data import structured_factors

    users, item_f = structured_factors(items, max(queries, 100_000), factors)
    rng = np.random.default_rng(11)
    q = users[np.sort(rng.choice(len(users), queries, replace=False))]
    return item_f, q


def _truth(items: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, float]:
    from models.topk import topk_scores

    t = time.perf_counter()
    ids, _ = topk_scores(queries, items, N)
    return ids, len(queries) / (time.perf_counter() - t)


def child(args) -> None:
    items, queries = _data(args.items, args.queries, args.factors)
    truth = np.load(args.truth)
    print(json.dumps(run_one(args.child, items, queries, truth)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ann_compare", description=__doc__.split("\n")[0])
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--factors", type=int, default=64)
    p.add_argument("--only", default=None, help="comma-separated contender names")
    p.add_argument("--timeout", type=float, default=900.0, help="per contender, seconds")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--truth", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args)
        return 0
    names = args.only.split(",") if args.only else list(CONTENDERS)
    items, queries = _data(args.items, args.queries, args.factors)  # builds the cache once
    truth, exact_ups = _truth(items, queries)
    RESULTS.mkdir(parents=True, exist_ok=True)
    truth_path = RESULTS / f"ann-truth-{args.items}-{args.queries}-{args.factors}.npy"
    np.save(truth_path, truth)
    rows = []
    for name in names:
        cmd = [sys.executable, "-m", "bench.ann_compare", "--child", name, "--truth", str(truth_path)]
        cmd += ["--items", str(args.items), "--queries", str(args.queries), "--factors", str(args.factors)]
        m = run_measured(cmd, timeout=args.timeout, cwd=str(Path(__file__).resolve().parent.parent))
        row = {"name": name, "peak_mb": round(m.peak_mb, 0), "wall_s": round(m.wall_s, 1), "ok": m.ok}
        if m.ok:
            row.update(json.loads(m.stdout.strip().splitlines()[-1]))
        else:
            row["error"] = "timed out" if m.timed_out else m.stderr_tail.strip().splitlines()[-1:] or ["?"]
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    out = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "items": args.items,
        "queries": args.queries,
        "factors": args.factors,
        "cores": len(os.sched_getaffinity(0)),
        "exact_users_per_s": round(exact_ups, 1),
        "rows": rows,
    }
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    (RESULTS / f"ann-compare-{stamp}.json").write_text(json.dumps(out, indent=1))
    print(table(out))
    return 0


def table(out: dict) -> str:
    L = [
        f"{out['items']:,} items x {out['factors']} factors, {out['queries']:,} queries, N={N}, "
        f"{out['cores']} cores; exact (models.topk): {out['exact_users_per_s']:,.0f} users/s",
        "",
        "| contender | version | build s | peak MB | setting | users/s | x exact | recall@50 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in out["rows"]:
        if not r.get("ok"):
            L.append(f"| {r['name']} | | | | {r.get('error')} | | | |")
            continue
        if not r["searches"]:
            L.append(f"| {r['name']} | | | {r['peak_mb']:,.0f} | | | | |")
        for s in r["searches"]:
            L.append(
                f"| {r['name']} | {r.get('version', '')} | {r.get('build_s', '')} | {r['peak_mb']:,.0f} | "
                f"{json.dumps(s['setting'])} | {s['users_per_s']:,.0f} | "
                f"{s['users_per_s'] / out['exact_users_per_s']:.1f} | {s['recall_at_50']:.3f} |"
            )
    return "\n".join(L)


if __name__ == "__main__":
    sys.exit(main())
