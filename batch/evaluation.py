"""Offline ranking metrics: the definitions used everywhere in the platform.

Pure functions, no I/O. Input is a matrix of recommendations and a sparse matrix of relevant (held-out) items.

Inputs
------
``recommended``
    int array ``(n_users, k_max)``: item indices per user, best first. ``-1`` is padding (the model had fewer
    than ``k_max`` items to offer) and always counts as a miss; it still occupies its rank. An item may
    appear at most once per row (ValueError otherwise).
``relevant``
    sparse matrix ``(n_users, n_items)``, the same user rows: the items with a stored nonzero value are the
    user's relevant items ``R_u`` (binary relevance; the values are ignored).
``ks``
    cut-offs, each ``1 <= k <= k_max``.
``n_catalog_items``
    the size of the catalogue the recommendations were drawn from (denominator of coverage).

Per user ``u`` and cut-off ``k``, with ``rel_j = 1`` if the item at rank ``j`` (1-based) is in ``R_u`` else 0,
``hits = sum_{j<=k} rel_j`` and ``c = min(k, |R_u|)``:

* ``precision@k``      = hits / k  (padding counts as a miss: the denominator is always ``k``)
* ``recall@k``         = hits / |R_u|
* ``recall_capped@k``  = hits / min(k, |R_u|)   (Liang et al. 2018; reaches 1.0 when the list is perfect)
* ``ndcg@k``           = DCG / IDCG with binary gains and log2 discount:
  ``DCG = sum_{j<=k} rel_j / log2(j + 1)``, ``IDCG = sum_{j<=c} 1 / log2(j + 1)`` (all relevant items first)
* ``map@k``            = (1 / min(k, |R_u|)) * sum_{j<=k} rel_j * precision@j
  (average precision at k; ``precision@j`` = hits in the first ``j`` / ``j``)

Each of these is the arithmetic mean over the **evaluated users**: users with ``|R_u| > 0``. Users with no
relevant item are left out of every metric and counted in ``users_skipped_no_relevant``.

Over the evaluated users' top-``k`` lists taken together (padding ignored):

* ``coverage@k`` = number of distinct recommended items / ``n_catalog_items``
* ``entropy@k``  = Shannon entropy in bits of the distribution of recommended items,
  ``-sum_i p_i log2 p_i`` with ``p_i`` = (times item ``i`` was recommended) / (number of recommendations).
  0 when everyone gets the same single item; ``log2(number of distinct items)`` at most.

Output of :func:`ranking_metrics`: a flat dict ``{"precision@10": ..., "recall@10": ..., ...,
"users_evaluated": int, "users_skipped_no_relevant": int}``. With no evaluated user the mean metrics are
NaN and coverage and entropy are 0.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import scipy.sparse as sp

import models
from batch.datasets import to_csr

__all__ = ["METRIC_NAMES", "hit_matrix", "ranking_metrics"]

METRIC_NAMES = ("precision", "recall", "recall_capped", "ndcg", "map", "coverage", "entropy")


def hit_matrix(recommended: np.ndarray, relevant: sp.spmatrix) -> np.ndarray:
    """Boolean ``(n_users, k_max)``: is ``recommended[u, j]`` one of ``u``'s relevant items (padding: False)."""
    rec = np.asarray(recommended)
    rel = sp.csr_matrix(relevant)
    rel.eliminate_zeros()
    rel.sum_duplicates()  # also sorts indices
    n_users, n_items = rel.shape
    rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(rel.indptr))
    rel_keys = rows * n_items + rel.indices.astype(np.int64)  # sorted: row-major, sorted columns
    valid = rec >= 0
    rec_keys = np.arange(n_users, dtype=np.int64)[:, None] * n_items + np.where(valid, rec, 0).astype(
        np.int64
    )
    if len(rel_keys) == 0:
        return np.zeros(rec.shape, dtype=bool)
    pos = np.searchsorted(rel_keys, rec_keys)
    found = rel_keys[np.minimum(pos, len(rel_keys) - 1)] == rec_keys
    return found & valid


def _validate(
    recommended: np.ndarray, relevant: sp.spmatrix, ks: tuple[int, ...], n_catalog_items: int
) -> None:
    if recommended.ndim != 2:
        raise ValueError(f"recommended must be 2-d (n_users, k_max), got shape {recommended.shape}")
    if not np.issubdtype(recommended.dtype, np.integer):
        raise ValueError(f"recommended must hold integer item indices, got {recommended.dtype}")
    if not sp.issparse(relevant):
        raise ValueError("relevant must be a scipy.sparse matrix (users x items)")
    if relevant.shape[0] != recommended.shape[0]:
        raise ValueError(f"recommended has {recommended.shape[0]} rows but relevant has {relevant.shape[0]}")
    if not ks:
        raise ValueError("ks must not be empty")
    k_max = recommended.shape[1]
    for k in ks:
        if k < 1 or k > k_max:
            raise ValueError(f"cut-off k={k} outside [1, {k_max}] (columns of recommended)")
    if n_catalog_items <= 0:
        raise ValueError(f"n_catalog_items must be positive, got {n_catalog_items}")
    if recommended.size:
        if recommended.min() < -1:
            raise ValueError("recommended holds negative item indices other than the -1 padding")
        if recommended.max() >= relevant.shape[1]:
            raise ValueError(
                f"recommended holds item {recommended.max()} but relevant has {relevant.shape[1]} item columns"
            )
        srt = np.sort(recommended, axis=1)
        dup = (srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)
        if dup.any():
            user = int(np.flatnonzero(dup.any(axis=1))[0])
            raise ValueError(f"recommended repeats an item within a user's list (first at row {user})")


def ranking_metrics(
    recommended: np.ndarray,
    relevant: sp.spmatrix,
    ks: Iterable[int] = (10,),
    n_catalog_items: int | None = None,
) -> dict[str, float | int]:
    """Ranking metrics at each cut-off in ``ks``; see the module docstring for the exact definitions.

    ``n_catalog_items`` defaults to the number of item columns of ``relevant``.
    """
    recommended = np.asarray(recommended)
    ks = tuple(sorted({int(k) for k in ks}))
    if n_catalog_items is None:
        n_catalog_items = relevant.shape[1] if sp.issparse(relevant) else 0
    _validate(recommended, relevant, ks, n_catalog_items)

    rel = sp.csr_matrix(relevant)
    rel.eliminate_zeros()
    rel.sum_duplicates()
    n_rel_all = np.diff(rel.indptr)
    evaluated = n_rel_all > 0
    n_eval = int(evaluated.sum())
    out: dict[str, float | int] = {}

    k_max = max(ks)
    rec = recommended[evaluated, :k_max]
    hits = hit_matrix(rec, rel[evaluated])
    n_rel = n_rel_all[evaluated].astype(np.float64)
    ranks = np.arange(1, k_max + 1, dtype=np.float64)
    discount = 1.0 / np.log2(ranks + 1.0)
    cum_hits = np.cumsum(hits, axis=1, dtype=np.float64)  # hits in the first j
    ideal_dcg = np.cumsum(discount)  # ideal_dcg[c - 1] = IDCG with c relevant items in the top
    prec_at_hits = np.where(hits, cum_hits / ranks, 0.0)
    cum_prec_at_hits = np.cumsum(prec_at_hits, axis=1)
    cum_dcg = np.cumsum(hits * discount, axis=1)

    for k in ks:
        if n_eval == 0:
            for name in ("precision", "recall", "recall_capped", "ndcg", "map"):
                out[f"{name}@{k}"] = float("nan")
            out[f"coverage@{k}"] = 0.0
            out[f"entropy@{k}"] = 0.0
            continue
        h = cum_hits[:, k - 1]
        capped = np.minimum(n_rel, k)
        out[f"precision@{k}"] = float(np.mean(h / k))
        out[f"recall@{k}"] = float(np.mean(h / n_rel))
        out[f"recall_capped@{k}"] = float(np.mean(h / capped))
        out[f"ndcg@{k}"] = float(np.mean(cum_dcg[:, k - 1] / ideal_dcg[capped.astype(np.int64) - 1]))
        out[f"map@{k}"] = float(np.mean(cum_prec_at_hits[:, k - 1] / capped))
        items = rec[:, :k]
        items = items[items >= 0]
        counts = np.bincount(items, minlength=0)
        counts = counts[counts > 0]
        out[f"coverage@{k}"] = float(len(counts) / n_catalog_items)
        if len(counts):
            p = counts / counts.sum()
            out[f"entropy@{k}"] = float(max(0.0, -np.sum(p * np.log2(p))))
        else:
            out[f"entropy@{k}"] = 0.0
    out["users_evaluated"] = n_eval
    out["users_skipped_no_relevant"] = int(len(n_rel_all) - n_eval)
    return out


# -- the temporal holdout the train step and the tuner share ----------------------------------------------------


def holdout_split(inter: pd.DataFrame, n_users: int, n_items: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(train matrix, relevant matrix): relevant = holdout interactions with items new to the user."""
    train = to_csr(inter, "weight_train", n_users, n_items)
    new_in_holdout = inter[(inter["holdout_events"] > 0) & (inter["weight_train"] <= 0)]
    relevant = sp.csr_matrix(
        (
            np.ones(len(new_in_holdout), np.float32),
            (new_in_holdout["user_idx"].to_numpy(), new_in_holdout["item_idx"].to_numpy()),
        ),
        shape=(n_users, n_items),
    )
    return train, relevant


def sample_users(relevant: sp.csr_matrix, max_users: int | None, seed: int) -> sp.csr_matrix:
    """``relevant`` kept for a seeded sample of at most ``max_users`` of the users who have relevant items (all
    of them when there are fewer, or with None); the other rows are emptied, so ``score`` skips them."""
    users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    if max_users is None or len(users) <= max_users:
        return relevant
    keep = np.zeros(relevant.shape[0], dtype=np.float32)
    keep[np.random.default_rng(seed).choice(users, size=max_users, replace=False)] = 1.0
    sampled = sp.csr_matrix(sp.diags(keep) @ relevant)
    sampled.eliminate_zeros()
    return sampled


def evaluated_users(train: sp.csr_matrix, relevant: sp.csr_matrix) -> np.ndarray:
    """Users with relevant holdout items and history in train (the cold ones are the fallback's)."""
    users = np.flatnonzero(np.diff(relevant.indptr) > 0).astype(np.int32)
    return users[np.diff(train.indptr)[users] > 0]


NO_USERS = {"users_evaluated": 0, "note": "no user has new items in the holdout days"}


def score(
    model: models.Recommender, train: sp.csr_matrix, relevant: sp.csr_matrix, ks: list[int]
) -> tuple[dict, np.ndarray, np.ndarray]:
    """Recommend for the evaluated users, score against their relevant items: (metrics, users, their top
    ``max(ks)`` ids), so a caller can score other models on the same users and lists."""
    users = evaluated_users(train, relevant)
    if len(users) == 0:
        return dict(NO_USERS), users, np.empty((0, max(ks)), np.int32)
    ids, _ = model.recommend(users, train[users], max(ks), filter_already_liked_items=True)
    return ranking_metrics(ids, relevant[users], ks=ks, n_catalog_items=train.shape[1]), users, ids


def evaluate(
    model_type: str,
    params: dict,
    seed: int,
    train: sp.csr_matrix,
    relevant: sp.csr_matrix,
    ks: list[int],
    *,
    show_progress: bool = False,
) -> tuple[dict, models.Recommender]:
    """Fit on the train matrix, recommend for users with relevant holdout items, score against them.

    Returns the metrics and the fitted model (the served model may continue from it)."""
    model = models.create_model(model_type, seed=seed, **params).fit(train, show_progress=show_progress)
    return score(model, train, relevant, ks)[0], model
