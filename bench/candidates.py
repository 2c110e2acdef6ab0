"""Candidates scoring: our exact top-N (models' recommend -> models.topk) against implicit's own
``model.recommend`` on the same model, same users, same filters, in one process, interleaved.

Also the scoring's FLOP/s (2 * users * items * factors / time) next to numpy float32 matmul FLOP/s at the same
shape (all users x the scored items, in blocks so the output fits in memory). Prints one JSON line.

    python -m bench.candidates --artifacts RECO_HOME/artifacts --pipeline demo --date D [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import scipy.sparse as sp

import models
from batch.storage import ArtifactStore


def load(root: str, pipeline: str, dt):
    store = ArtifactStore(root)
    model_src = store.committed(pipeline, "model", dt, step="train")
    with model_src.open("model.npz") as f:
        model = models.load_model(f)
    inter_src = store.committed(pipeline, "interactions", dt, step="aggregate")
    inter = inter_src.read_parquet("interactions.parquet", columns=["user_idx", "item_idx"])
    items = model_src.read_parquet("items.parquet").to_pandas()
    u = inter.column("user_idx").to_numpy()
    i = inter.column("item_idx").to_numpy()
    seen = sp.csr_matrix((np.ones(len(u), np.float32), (u, i)), shape=(model.n_users, model.n_items))
    unavailable = items.loc[~items["available"], "item_idx"].to_numpy(np.int32)
    return model, seen, unavailable


def compare(ids_a, scores_a, ids_b, scores_b, rtol=1e-5) -> dict:
    same_row = (ids_a == ids_b).all(axis=1)
    # a differing row is a tie (or float rounding) difference when the two lists' scores agree position by
    # position and each list's items score the same under the other's ranking
    close = np.isclose(scores_a, scores_b, rtol=rtol, atol=1e-6).all(axis=1)
    return {
        "rows": int(len(ids_a)),
        "rows_identical": int(same_row.sum()),
        "match_rate": float(same_row.mean()) if len(ids_a) else 1.0,
        "rows_differing_only_in_ties": int((~same_row & close).sum()),
        "rows_differing_beyond_ties": int((~same_row & ~close).sum()),
        "slot_match_rate": float((ids_a == ids_b).mean()) if len(ids_a) else 1.0,
    }


def matmul_flops(user_f: np.ndarray, item_f: np.ndarray, block: int = 4096, max_users: int = 60000) -> dict:
    """numpy float32 sgemm (all BLAS threads) over (users x f) @ (f x items), in row blocks."""
    users = user_f[:max_users]
    item_t = np.ascontiguousarray(item_f.T)
    out = np.empty((block, item_f.shape[0]), np.float32)
    np.matmul(users[:block], item_t, out=out[: min(block, len(users))])  # warm up
    t = time.perf_counter()
    for s in range(0, len(users), block):
        q = users[s : s + block]
        np.matmul(q, item_t, out=out[: len(q)])
    el = time.perf_counter() - t
    flop = 2.0 * len(users) * item_f.shape[0] * item_f.shape[1]
    return {
        "users": len(users),
        "items": int(item_f.shape[0]),
        "factors": int(item_f.shape[1]),
        "seconds": el,
        "gflops": flop / el / 1e9,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--artifacts", required=True)
    p.add_argument("--pipeline", default="demo")
    p.add_argument("--date", required=True)
    p.add_argument("-n", type=int, default=50)
    p.add_argument("--repeats", type=int, default=2)
    a = p.parse_args()
    from datetime import date

    dt = date.fromisoformat(a.date)
    model, seen, unavailable = load(a.artifacts, a.pipeline, dt)
    users = np.flatnonzero(np.diff(seen.indptr) > 0).astype(np.int32)
    user_items = seen[users]
    imp = model.to_implicit()
    runs = {"ours": [], "implicit": []}
    results = {}
    for _ in range(a.repeats):  # interleaved: ours, implicit, ours, implicit, ...
        t = time.perf_counter()
        results["ours"] = model.recommend(
            users, user_items, a.n, filter_already_liked_items=True, filter_items=unavailable
        )
        runs["ours"].append(time.perf_counter() - t)
        t = time.perf_counter()
        results["implicit"] = imp.recommend(
            users, user_items, N=a.n, filter_already_liked_items=True, filter_items=unavailable
        )
        runs["implicit"].append(time.perf_counter() - t)
    best = {k: min(v) for k, v in runs.items()}
    n_items_scored = model.n_items - len(np.unique(unavailable))
    flop = 2.0 * len(users) * n_items_scored * model.item_factors.shape[1]
    allowed = np.setdiff1d(np.arange(model.n_items), unavailable)
    ref = matmul_flops(model.user_factors[users], model.item_factors[allowed])
    out = {
        "users": int(len(users)),
        "items_scored": int(n_items_scored),
        "factors": int(model.item_factors.shape[1]),
        "n": a.n,
        "runs_s": runs,
        "best_s": best,
        "users_per_s": {k: len(users) / v for k, v in best.items()},
        "speedup": best["implicit"] / best["ours"],
        "scoring_gflops": {k: flop / v / 1e9 for k, v in best.items()},
        "numpy_matmul": ref,
        "identical": compare(*results["ours"], *results["implicit"]),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
