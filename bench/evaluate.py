"""nDCG@10 of the three batches on one temporal holdout, via batch.evaluation.ranking_metrics.

Every batch runs for session date S (events of the pipeline's window ending with S). The holdout is the next
day (S + 1 in the pipeline's timezone), which none of them saw: the relevant items of a user are the items
they interacted with that day and not in the window ("new items only"). Users evaluated: those with history
in the window and at least one relevant item. Each batch's served top-N for those users (its Parquet output,
as written) is cut at 10 and scored; a user missing from an output scores 0.
"""

from __future__ import annotations

from datetime import timedelta

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import scipy.sparse as sp

from batch.evaluation import ranking_metrics

VALID = (
    "user_id IS NOT NULL AND item_id IS NOT NULL AND event_type IN ('view', 'like', 'bookmark') "
    "AND ts >= CAST(? AS TIMESTAMPTZ) AND ts < CAST(? AS TIMESTAMPTZ)"
)


class Holdout:
    def __init__(self, db: str, table: str, start, end, k: int = 10):
        hold_end = end + timedelta(days=1)
        con = duckdb.connect(db, read_only=True)
        rel = con.execute(
            f"""WITH train AS (SELECT DISTINCT user_id, item_id FROM {table} WHERE {VALID}),
                     hold AS (SELECT DISTINCT user_id, item_id FROM {table} WHERE {VALID})
                SELECT h.user_id, h.item_id FROM hold h
                WHERE h.user_id IN (SELECT user_id FROM train)
                  AND NOT EXISTS (SELECT 1 FROM train t WHERE t.user_id = h.user_id AND t.item_id = h.item_id)""",
            [start.isoformat(), end.isoformat(), end.isoformat(), hold_end.isoformat()],
        ).df()
        self.train_pairs = con.execute(
            f"SELECT DISTINCT user_id, item_id FROM {table} WHERE {VALID}",
            [start.isoformat(), end.isoformat()],
        ).df()
        all_items = con.execute(f"SELECT DISTINCT item_id FROM {table} WHERE item_id IS NOT NULL").df()
        con.close()
        self.k = k
        self.users = pd.Index(np.sort(rel["user_id"].unique()))
        self.items = pd.Index(np.sort(all_items["item_id"].to_numpy()))
        self.relevant = sp.csr_matrix(
            (
                np.ones(len(rel), np.float32),
                (self.users.get_indexer(rel["user_id"]), self.items.get_indexer(rel["item_id"])),
            ),
            shape=(len(self.users), len(self.items)),
        )

    def score(self, recs: pd.DataFrame, *, filter_seen: bool = False) -> dict:
        """recs: user_id, item_id, rank (1 = best). Returns ndcg@10 and friends."""
        recs = recs[recs["user_id"].isin(self.users)]
        if filter_seen:  # drop already-seen items, then re-rank (for outputs that do not filter them)
            seen = recs.merge(self.train_pairs, on=["user_id", "item_id"], how="left", indicator=True)
            recs = seen[seen["_merge"] == "left_only"].drop(columns="_merge")
            recs = recs.sort_values(["user_id", "rank"])
            recs = recs.assign(rank=recs.groupby("user_id").cumcount() + 1)
        recs = recs[recs["rank"] <= self.k]
        mat = np.full((len(self.users), self.k), -1, np.int64)
        u = self.users.get_indexer(recs["user_id"])
        i = self.items.get_indexer(recs["item_id"])
        ok = (u >= 0) & (i >= 0)
        mat[u[ok], recs["rank"].to_numpy()[ok] - 1] = i[ok]
        m = ranking_metrics(mat, self.relevant, ks=(self.k,), n_catalog_items=len(self.items))
        return {
            key: m[key]
            for key in (f"ndcg@{self.k}", f"recall@{self.k}", f"precision@{self.k}", "users_evaluated")
        }


def read_recs(path: str, columns=("user_id", "item_id", "rank")) -> pd.DataFrame:
    return pq.read_table(path, columns=list(columns)).to_pandas()
