"""Popularity baseline: the same ranking of items for everyone, minus what each user has already seen."""

from __future__ import annotations

from typing import Self

import numpy as np
import scipy.sparse as sp

from .base import NUM_THREADS, SEED, Param, Recommender, check_user_items, register
from .topk import DEFAULT_BATCH_SIZE, topk_scores


@register
class PopularityRecommender(Recommender):
    """Score of an item = sum of its weights over users (``by="weight"``, default) or the number of users
    with a stored interaction (``by="users"``). Ties are ranked by lower item index.

    ``recommend`` returns the most popular eligible items the user has not interacted with;
    ``similar_items`` returns the most popular items other than the item itself. ``seed`` is accepted for
    uniformity (the model is deterministic).
    """

    model_type = "popularity"
    param_specs = {
        "by": Param("weight", (str,), lambda v: v in ("weight", "users"), 'must be "weight" or "users"'),
        "seed": SEED,
        "num_threads": NUM_THREADS,
    }

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self._scores: np.ndarray | None = None

    @property
    def item_scores(self) -> np.ndarray | None:
        """(n_items,) float32 popularity scores."""
        return self._scores

    def fit(self, user_items: sp.csr_matrix, *, show_progress: bool = False) -> Self:
        user_items = check_user_items(user_items)
        if self._params["by"] == "users":
            counts = np.bincount(user_items.indices[user_items.data != 0], minlength=user_items.shape[1])
            scores = counts.astype(np.float32)
        else:
            scores = np.asarray(user_items.sum(axis=0, dtype=np.float64)).ravel().astype(np.float32)
        self._scores = scores
        self._n_users, self._n_items = user_items.shape
        return self

    def _rank(self, n_queries: int, N: int, exclude, filter_items) -> tuple[np.ndarray, np.ndarray]:
        # A query's top N lies within the first N + (its excluded items) of the global order (score descending,
        # ties by lower index: topk_scores's order), so only the first N + (most items any query excludes) are
        # scored; the rest join the filter (removed up front). Same result, a few thousand columns instead of
        # the catalogue.
        n_items = len(self._scores)
        order = np.lexsort((np.arange(n_items), -self._scores))
        if filter_items is not None and len(filter_items):
            order = order[~np.isin(order, filter_items)]
        widest = int(np.diff(exclude.indptr).max()) if exclude is not None and exclude.shape[0] else 0
        outside = order[N + widest :]
        if filter_items is not None and len(filter_items):
            outside = np.union1d(outside, filter_items)
        # a rank-1 "factor model": 1.0 * score is exact in float32
        return topk_scores(
            np.ones((n_queries, 1), np.float32),
            self._scores[:, None],
            N,
            exclude_csr_rows=exclude,
            filter_items=outside if len(outside) else None,
            batch_size=DEFAULT_BATCH_SIZE,
            num_threads=self._params["num_threads"],
        )

    def recommend(
        self,
        userids: np.ndarray,
        user_items: sp.csr_matrix,
        N: int,
        *,
        filter_already_liked_items: bool = True,
        filter_items: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        self._check_fitted()
        userids = self._check_userids(userids, user_items if filter_already_liked_items else None)
        filter_items = self._check_filter_items(filter_items)
        exclude = user_items if filter_already_liked_items else None
        return self._rank(len(userids), N, exclude, filter_items)

    def similar_items(
        self, itemids: np.ndarray, N: int, *, filter_items: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        self._check_fitted()
        itemids = self._check_itemids(itemids)
        filter_items = self._check_filter_items(filter_items)
        n = len(itemids)
        itself = sp.csr_matrix((np.ones(n, np.float32), itemids, np.arange(n + 1)), shape=(n, self.n_items))
        return self._rank(n, N, itself, filter_items)

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"item_scores": self._scores}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        scores = np.asarray(state["item_scores"], dtype=np.float32)
        if scores.shape != (self._n_items,):
            raise ValueError("saved item_scores do not match n_items")
        self._scores = scores
