"""The batch a user would hand-write with implicit: the baseline `reco run` is compared against.

Reads the events of the window from the same DuckDB warehouse, sums the event weights per (user, item) with
pandas, fits ``implicit``'s ALS (the same hyper-parameters as the pipeline), recommends N items for every user
with already-seen items filtered, and writes Parquet (user_id, item_id, rank, score). BLAS is limited to one
thread during fit, as implicit itself advises. Prints a JSON line of phase timings.

    python -m bench.handwritten --db W.duckdb --table demo_events --start ISO --end ISO --out recs.parquet
"""

from __future__ import annotations

import argparse
import json
import time

t0 = time.perf_counter()
import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from implicit.als import AlternatingLeastSquares  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

WEIGHTS = {"view": 1.0, "like": 4.0, "bookmark": 6.0}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--db", required=True)
    p.add_argument("--table", default="demo_events")
    p.add_argument("--start", required=True)
    p.add_argument("--end", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--factors", type=int, default=64)
    p.add_argument("--iterations", type=int, default=15)
    p.add_argument("--regularization", type=float, default=0.05)
    p.add_argument("--alpha", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("-n", type=int, default=50)
    a = p.parse_args()
    timings = {"import_s": time.perf_counter() - t0}

    t = time.perf_counter()
    con = duckdb.connect(a.db, read_only=True)
    events = con.execute(
        f"SELECT user_id, item_id, event_type FROM {a.table} "
        "WHERE ts >= CAST(? AS TIMESTAMPTZ) AND ts < CAST(? AS TIMESTAMPTZ) "
        "AND user_id IS NOT NULL AND item_id IS NOT NULL",
        [a.start, a.end],
    ).df()
    con.close()
    timings["read_s"] = time.perf_counter() - t

    t = time.perf_counter()
    events["weight"] = events["event_type"].map(WEIGHTS)
    events = events.dropna(subset=["weight"])
    pairs = events.groupby(["user_id", "item_id"], sort=False, observed=True)["weight"].sum().reset_index()
    users = pairs["user_id"].astype("category")
    items = pairs["item_id"].astype("category")
    user_items = sp.csr_matrix(
        (pairs["weight"].to_numpy(np.float32), (users.cat.codes.to_numpy(), items.cat.codes.to_numpy())),
        shape=(len(users.cat.categories), len(items.cat.categories)),
    )
    timings["aggregate_s"] = time.perf_counter() - t

    t = time.perf_counter()
    model = AlternatingLeastSquares(
        factors=a.factors,
        iterations=a.iterations,
        regularization=a.regularization,
        alpha=a.alpha,
        random_state=a.seed,
    )
    with threadpool_limits(1, "blas"):
        model.fit(user_items, show_progress=False)
    timings["fit_s"] = time.perf_counter() - t

    t = time.perf_counter()
    userids = np.arange(user_items.shape[0])
    ids, scores = model.recommend(userids, user_items, N=a.n, filter_already_liked_items=True)
    timings["recommend_s"] = time.perf_counter() - t

    t = time.perf_counter()
    valid = ids >= 0
    user_names = np.asarray(users.cat.categories)
    item_names = np.asarray(items.cat.categories)
    rank = np.broadcast_to(np.arange(1, a.n + 1, dtype=np.int32), ids.shape)
    table = pa.table(
        {
            "user_id": pa.array(np.repeat(user_names, a.n).reshape(ids.shape)[valid]),
            "item_id": pa.array(item_names[ids[valid]]),
            "rank": pa.array(rank[valid]),
            "score": pa.array(scores[valid]),
        }
    )
    pq.write_table(table, a.out)
    timings["write_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "users": int(user_items.shape[0]),
                "items": int(user_items.shape[1]),
                "interactions": int(user_items.nnz),
                "events": int(len(events)),
                "rows": table.num_rows,
                "timings": {k: round(v, 3) for k, v in timings.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
