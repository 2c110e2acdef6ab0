"""The ANN index gate, right after the index is built: does it answer like exact search, is it complete?

- recall: recall@N of the index against exact scoring (:func:`models.topk.topk_scores`) over the same available
  items, on a seeded sample of users (default 2,000). Per user: |index top-N ∩ exact top-N| / |exact top-N|;
  the figure is the mean over the sample (users with an empty exact list are not counted). Below ``min_recall``
  (default 0.95) the gate fails. No already-seen filtering here: the index is judged on retrieval itself, which is
  what every downstream filter starts from.
- completeness: every available item is in the index, and no unavailable one (an item indexed but off sale
  would only waste result slots; one missing can never be recommended).

A pure function of the index, the factors and the availability mask: it reads nothing and never raises on a bad
index; the caller (the index step's hook) records the figures, alerts and stops the batch on a ``fail``.
"""

from __future__ import annotations

import time

import numpy as np

from batch.checks.data import CheckResult, _outcome
from models.ann import AnnIndex
from models.topk import topk_scores

DEFAULT_SAMPLE_USERS = 2000
DEFAULT_MIN_RECALL = 0.95


def sample_users(n_users: int, sample: int, seed: int, eligible: np.ndarray | None = None) -> np.ndarray:
    """Seeded sample (sorted) of user indices, from ``eligible`` (e.g. users with history) or all users."""
    pool = np.arange(n_users) if eligible is None else np.asarray(eligible, dtype=np.int64)
    if len(pool) <= sample:
        return np.sort(pool)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(pool, sample, replace=False))


def recall_at_n(approx_ids: np.ndarray, exact_ids: np.ndarray) -> np.ndarray:
    """Per row: |approx ∩ exact| / |exact| over valid ids (>= 0); NaN for rows whose exact list is empty."""
    rows = exact_ids.shape[0]
    out = np.full(rows, np.nan)
    for r in range(rows):
        exact = exact_ids[r][exact_ids[r] >= 0]
        if len(exact):
            out[r] = np.isin(exact, approx_ids[r][approx_ids[r] >= 0]).sum() / len(exact)
    return out


def validate_index(
    index: AnnIndex,
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    available: np.ndarray,
    n: int,
    *,
    sample: int = DEFAULT_SAMPLE_USERS,
    seed: int = 0,
    min_recall: float = DEFAULT_MIN_RECALL,
    eligible_users: np.ndarray | None = None,
    severity: str = "fail",
) -> tuple[list[CheckResult], dict]:
    """(check results, figures) for a freshly built index.

    ``item_factors`` is the model's full (n_items x factors) matrix and ``available`` its boolean mask;
    ``user_factors`` the model's users, sampled with ``seed`` (from ``eligible_users`` when given).
    Figures: recall_at_n, recall_p05 (5th percentile of per-user recall), users_sampled, items_available,
    items_indexed, missing_items, unavailable_indexed, ann_seconds, exact_seconds.
    """
    available = np.asarray(available, dtype=bool)
    n_items = len(available)
    figures: dict = {"n": int(n), "min_recall": float(min_recall), "seed": int(seed), "kind": index.kind}
    results: list[CheckResult] = []

    # completeness: the index's item set against the available items
    avail_idx = np.flatnonzero(available)
    indexed = index.item_idx[(index.item_idx >= 0) & (index.item_idx < n_items)]
    out_of_range = int(index.size - len(indexed))
    missing = np.setdiff1d(avail_idx, indexed)
    unavailable_indexed = np.setdiff1d(indexed, avail_idx)
    figures.update(
        items_available=int(len(avail_idx)),
        items_indexed=int(index.size),
        missing_items=int(len(missing)),
        unavailable_indexed=int(len(unavailable_indexed)),
    )
    complete = len(missing) == 0 and len(unavailable_indexed) == 0 and out_of_range == 0
    problems = []
    if len(missing):
        problems.append(f"{len(missing)} available items missing (e.g. item_idx {int(missing[0])})")
    if len(unavailable_indexed):
        problems.append(f"{len(unavailable_indexed)} unavailable items indexed")
    if out_of_range:
        problems.append(f"{out_of_range} index entries outside the catalogue of {n_items} items")
    results.append(
        CheckResult(
            "index_completeness",
            _outcome(complete, severity),
            float(len(missing)),
            "0 missing, 0 unavailable indexed",
            "; ".join(problems) if problems else f"all {len(avail_idx):,} available items are indexed",
            severity,
            {
                "missing_sample": missing[:10].tolist(),
                "unavailable_sample": unavailable_indexed[:10].tolist(),
            },
        )
    )

    # recall against exact scoring on a seeded sample
    users = sample_users(len(user_factors), sample, seed, eligible_users)
    figures["users_sampled"] = int(len(users))
    if len(users) == 0 or len(avail_idx) == 0:
        results.append(
            CheckResult("index_recall", "skipped", None, f">= {min_recall:g}", "no users or items", severity)
        )
        figures["recall_at_n"] = None
        return results, figures
    q = np.ascontiguousarray(user_factors[users], dtype=np.float32)
    unavailable = np.flatnonzero(~available)
    t = time.perf_counter()
    approx_ids, _ = index.search(q, n, filter_items=unavailable if len(unavailable) else None)
    figures["ann_seconds"] = round(time.perf_counter() - t, 4)
    t = time.perf_counter()
    exact_ids, _ = topk_scores(q, item_factors, n, filter_items=unavailable if len(unavailable) else None)
    figures["exact_seconds"] = round(time.perf_counter() - t, 4)
    per_user = recall_at_n(approx_ids, exact_ids)
    per_user = per_user[~np.isnan(per_user)]
    recall = float(per_user.mean()) if len(per_user) else 1.0
    figures["recall_at_n"] = round(recall, 6)
    figures["recall_p05"] = round(float(np.percentile(per_user, 5)), 6) if len(per_user) else 1.0
    ok = recall >= min_recall
    msg = (
        f"recall@{n} of the {index.kind} index vs exact scoring is {recall:.4f} over {len(per_user):,} sampled "
        f"users (5th percentile {figures['recall_p05']:.3f})"
    )
    results.append(
        CheckResult(
            "index_recall",
            _outcome(ok, severity),
            recall,
            f">= {min_recall:g}",
            ("index answers unlike exact search: " if not ok else "") + msg,
            severity,
            {"params": index.params.to_dict(), "users_sampled": int(len(users))},
        )
    )
    return results, figures
