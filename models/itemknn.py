"""Item-item cosine nearest neighbours via ``implicit.nearest_neighbours.CosineRecommender``."""

from __future__ import annotations

import warnings
from typing import Self

import numpy as np
import scipy.sparse as sp
from implicit.nearest_neighbours import CosineRecommender
from threadpoolctl import threadpool_limits

from .base import NUM_THREADS, SEED, Recommender, check_user_items, positive_int, register
from .topk import topk_batched

# sparse scoring is cheap per row; larger batches amortise the Python overhead
_BATCH_SIZE = 1024


@register
class ItemKNNRecommender(Recommender):
    """Item-based kNN: ``similarity[i, j]`` = cosine of the item columns ``i`` and ``j`` of the training
    matrix, keeping the ``K`` most similar items per row (``implicit``'s ``CosineRecommender``).

    ``recommend`` scores ``score(u, j) = sum_i user_items[u, i] * similarity[i, j]`` (as ``implicit`` does);
    ``similar_items`` ranks the stored row ``similarity[i]``. Items without a stored similarity score 0
    and are still eligible (after all positive scores, by lower index). ``seed`` is accepted for uniformity.
    """

    model_type = "itemknn"
    param_specs = {"K": positive_int(20), "seed": SEED, "num_threads": NUM_THREADS}

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self._similarity: sp.csr_matrix | None = None

    @property
    def similarity(self) -> sp.csr_matrix | None:
        """(n_items, n_items) float32 CSR item-item similarity."""
        return self._similarity

    def fit(self, user_items: sp.csr_matrix, *, show_progress: bool = False) -> Self:
        user_items = check_user_items(user_items)
        with threadpool_limits(1, "blas"), warnings.catch_warnings():
            # implicit converts its own intermediate COO matrix to CSR and warns about it
            warnings.filterwarnings("ignore", message="Method expects CSR input")
            model = CosineRecommender(K=self._params["K"], num_threads=self._params["num_threads"])
            model.fit(user_items, show_progress=show_progress)
        self._set_similarity(model.similarity)
        self._n_users, self._n_items = user_items.shape
        return self

    def _set_similarity(self, similarity: sp.spmatrix) -> None:
        sim = sp.csr_matrix(similarity, dtype=np.float32)
        sim.sort_indices()
        self._similarity = sim

    def _topk(self, rows: sp.csr_matrix, N: int, exclude, filter_items) -> tuple[np.ndarray, np.ndarray]:
        sim = self._similarity
        sim_cols: dict[str, sp.csr_matrix] = {}

        def score(start: int, stop: int, allowed: np.ndarray | None) -> np.ndarray:
            if allowed is None:
                return (rows[start:stop] @ sim).toarray()
            if "s" not in sim_cols:
                sim_cols["s"] = sim[:, allowed].tocsr()
            return (rows[start:stop] @ sim_cols["s"]).toarray()

        return topk_batched(
            score,
            rows.shape[0],
            self.n_items,
            N,
            exclude_csr_rows=exclude,
            filter_items=filter_items,
            batch_size=_BATCH_SIZE,
            num_threads=1,  # scipy sparse products hold the GIL: threads would not help
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
        userids = self._check_userids(userids, user_items)
        filter_items = self._check_filter_items(filter_items)
        rows = sp.csr_matrix(user_items, dtype=np.float32)
        exclude = rows if filter_already_liked_items else None
        return self._topk(rows, N, exclude, filter_items)

    def similar_items(
        self, itemids: np.ndarray, N: int, *, filter_items: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        self._check_fitted()
        itemids = self._check_itemids(itemids)
        filter_items = self._check_filter_items(filter_items)
        n = len(itemids)
        onehot = sp.csr_matrix((np.ones(n, np.float32), itemids, np.arange(n + 1)), shape=(n, self.n_items))
        return self._topk(onehot, N, onehot, filter_items)

    def _get_state(self) -> dict[str, np.ndarray]:
        sim = self._similarity
        return {"sim_data": sim.data, "sim_indices": sim.indices, "sim_indptr": sim.indptr}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        n = self._n_items
        sim = sp.csr_matrix((state["sim_data"], state["sim_indices"], state["sim_indptr"]), shape=(n, n))
        self._set_similarity(sim)
