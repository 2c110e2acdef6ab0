"""Matrix-factorisation models (ALS, BPR) on top of ``implicit``, scored with our own exact top-N.

``implicit`` is used for fitting only. After ``fit`` the model keeps plain C-contiguous float32 user and item
factor matrices; ``recommend`` and ``similar_items`` use :func:`models.topk.topk_scores`, which returns the same
top-N as ``implicit``'s ``recommend`` (ties broken by lower item index) and is faster on CPU.

``implicit`` parallelises fitting itself (``num_threads``, 0 = all cores), so fitting runs under
``threadpoolctl.threadpool_limits(1, "blas")`` to keep OpenBLAS from over-subscribing the cores.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from .base import Recommender, check_user_items
from .topk import DEFAULT_BATCH_SIZE, topk_scores

# Called after every training iteration of a factor model fit in this context: (iteration, 1-based, and the model
# holding the factors of that iteration). Lets a caller watch a fit converge (e.g. report intermediate metrics to a
# tuner, which may stop the fit by raising) without a parameter on every fit() signature.
IterationCallback = Callable[[int, "FactorRecommender"], None]
_ITERATION_CALLBACK: ContextVar[IterationCallback | None] = ContextVar("iteration_callback", default=None)


@contextmanager
def iteration_callback(callback: IterationCallback) -> Iterator[None]:
    """Within the block, every ``fit``/``fit_more`` of a factor model calls ``callback(iteration, model)``
    after each iteration. An exception raised by the callback ends the fit and propagates."""
    token = _ITERATION_CALLBACK.set(callback)
    try:
        yield
    finally:
        _ITERATION_CALLBACK.reset(token)


def _as_factors(array: Any) -> np.ndarray:
    if hasattr(array, "to_numpy"):  # implicit.gpu.Matrix
        array = array.to_numpy()
    return np.ascontiguousarray(array, dtype=np.float32)


def align_rows(factors: np.ndarray, known_ids: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows of ``factors`` re-indexed to ``ids``, mask of the ids found in ``known_ids``); unmatched rows are 0."""
    known = pd.Index(np.asarray(known_ids, dtype=object))
    if not known.is_unique:
        raise ValueError("the parent's ids are not unique")
    pos = known.get_indexer(np.asarray(ids, dtype=object))
    matched = pos >= 0
    out = np.zeros((len(ids), factors.shape[1]), dtype=np.float32)
    out[matched] = factors[pos[matched]]
    return out, matched


class FactorRecommender(Recommender):
    """A recommender scoring ``user_factors @ item_factors.T``; subclasses build the ``implicit`` model."""

    batch_size: int = DEFAULT_BATCH_SIZE

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._user_factors: np.ndarray | None = None
        self._item_factors: np.ndarray | None = None
        self._item_unit: np.ndarray | None = None  # cached normalised item factors

    @abstractmethod
    def _make_implicit(self, device: str | None = None) -> Any:
        """The unfitted ``implicit`` model for the current params (on ``device``; default: the params')."""

    def _device_factors(self, array: np.ndarray) -> Any:
        """Factors in the form the implicit model of ``_make_implicit`` takes (a host copy on CPU)."""
        return array.copy()

    @property
    def user_factors(self) -> np.ndarray | None:
        return self._user_factors

    @property
    def item_factors(self) -> np.ndarray | None:
        return self._item_factors

    def _confidence(self, user_items: sp.csr_matrix) -> sp.csr_matrix:
        """The matrix ``implicit`` fits on, from the interaction weights (a subclass may reweight them)."""
        return user_items

    def _implicit_callback(self, model: Any, shape: tuple[int, int]) -> Callable | None:
        callback = _ITERATION_CALLBACK.get()
        if callback is None:
            return None

        def on_iteration(iteration: int, *_: Any) -> None:
            self._set_factors(_as_factors(model.user_factors), _as_factors(model.item_factors))
            self._n_users, self._n_items = shape
            callback(iteration + 1, self)

        return on_iteration

    def fit(self, user_items: sp.csr_matrix, *, show_progress: bool = False) -> Self:
        user_items = check_user_items(user_items)
        with threadpool_limits(1, "blas"):
            model = self._make_implicit()
            model.fit(
                self._confidence(user_items),
                show_progress=show_progress,
                callback=self._implicit_callback(model, user_items.shape),
            )
        if hasattr(model, "to_cpu") and not isinstance(model.item_factors, np.ndarray):
            model = model.to_cpu()
        self._set_factors(_as_factors(model.user_factors), _as_factors(model.item_factors))
        self._n_users, self._n_items = user_items.shape
        return self

    def fit_more(self, user_items: sp.csr_matrix, *, iterations: int, show_progress: bool = False) -> Self:
        """Warm start: ``iterations`` more passes of ``implicit`` starting from the current factors."""
        if self._user_factors is None:
            return self.fit(user_items, show_progress=show_progress)
        user_items = check_user_items(user_items)
        if user_items.shape != (self.n_users, self.n_items):
            raise ValueError(
                f"fit_more needs the same users x items as the fitted model: {user_items.shape} vs "
                f"{(self.n_users, self.n_items)}"
            )
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        with threadpool_limits(1, "blas"):
            model = self._make_implicit()
            model.iterations = iterations
            # implicit initialises factors only when they are unset, so fit() continues from these
            model.user_factors = self._device_factors(self._user_factors)
            model.item_factors = self._device_factors(self._item_factors)
            model.fit(
                self._confidence(user_items),
                show_progress=show_progress,
                callback=self._implicit_callback(model, user_items.shape),
            )
        if hasattr(model, "to_cpu") and not isinstance(model.item_factors, np.ndarray):
            model = model.to_cpu()
        self._set_factors(_as_factors(model.user_factors), _as_factors(model.item_factors))
        return self

    def _initial_factors(self, rng: np.random.Generator, n: int, width: int, side: str) -> np.ndarray:
        """Seeded initial factors for ``n`` new rows, as implicit's ALS draws them (uniform [0, 0.01))."""
        return rng.random((n, width), dtype=np.float32) * np.float32(0.01)

    def start_from(
        self,
        parent: FactorRecommender,
        *,
        parent_user_ids: np.ndarray,
        parent_item_ids: np.ndarray,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
    ) -> dict[str, int]:
        """Take the parent's factors as this model's starting point, rows matched by user and item id (not by
        index: ids come and go between days). Ids the parent does not know start from the seeded
        initialisation. Call ``fit_more`` afterwards. Returns how many users and items were matched and new."""
        if type(parent) is not type(self):
            raise ValueError(
                f"cannot warm-start a {self.model_type!r} model from a {parent.model_type!r} model"
            )
        if parent.user_factors is None or parent.item_factors is None:
            raise ValueError("the parent model is not fitted")
        width = parent.item_factors.shape[1]
        if parent.user_factors.shape[1] != width:
            raise ValueError(
                f"parent factor widths differ: {parent.user_factors.shape}, {parent.item_factors.shape}"
            )
        if len(parent_user_ids) != parent.n_users or len(parent_item_ids) != parent.n_items:
            raise ValueError(
                f"parent id maps ({len(parent_user_ids)} users, {len(parent_item_ids)} items) do not match its "
                f"factors ({parent.n_users} users, {parent.n_items} items)"
            )
        rng = np.random.default_rng(self._params.get("seed", 0))
        users, users_matched = align_rows(parent.user_factors, parent_user_ids, user_ids)
        items, items_matched = align_rows(parent.item_factors, parent_item_ids, item_ids)
        # new rows drawn in a fixed order (users, then items) from the model's seed: the same run gives the same model
        users[~users_matched] = self._initial_factors(rng, int((~users_matched).sum()), width, "user")
        items[~items_matched] = self._initial_factors(rng, int((~items_matched).sum()), width, "item")
        self._set_factors(users, items)
        self._n_users, self._n_items = len(user_ids), len(item_ids)
        return {
            "users_matched": int(users_matched.sum()),
            "users_new": int((~users_matched).sum()),
            "items_matched": int(items_matched.sum()),
            "items_new": int((~items_matched).sum()),
        }

    def _set_factors(self, user_factors: np.ndarray, item_factors: np.ndarray) -> None:
        if user_factors.ndim != 2 or item_factors.ndim != 2 or user_factors.shape[1] != item_factors.shape[1]:
            raise ValueError(f"bad factor shapes {user_factors.shape}, {item_factors.shape}")
        user_factors, item_factors = _as_factors(user_factors), _as_factors(item_factors)
        if not (np.isfinite(user_factors).all() and np.isfinite(item_factors).all()):
            raise ValueError(
                f"{self.model_type}: factors contain NaN or inf (training diverged? lower learning_rate/alpha)"
            )
        self._user_factors = user_factors
        self._item_factors = item_factors
        self._item_unit = None

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
        return topk_scores(
            self._user_factors[userids],
            self._item_factors,
            N,
            exclude_csr_rows=exclude,
            filter_items=filter_items,
            batch_size=self.batch_size,
            num_threads=self._params.get("num_threads", 0),
        )

    def similar_items(
        self, itemids: np.ndarray, N: int, *, filter_items: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Cosine similarity of the item factors; items with all-zero factors have similarity 0."""
        self._check_fitted()
        itemids = self._check_itemids(itemids)
        filter_items = self._check_filter_items(filter_items)
        if self._item_unit is None:
            norms = np.linalg.norm(self._item_factors, axis=1, keepdims=True)
            norms[norms == 0] = 1.0
            self._item_unit = np.ascontiguousarray(self._item_factors / norms, dtype=np.float32)
        n = len(itemids)
        itself = sp.csr_matrix((np.ones(n, np.float32), itemids, np.arange(n + 1)), shape=(n, self.n_items))
        return topk_scores(
            self._item_unit[itemids],
            self._item_unit,
            N,
            exclude_csr_rows=itself,
            filter_items=filter_items,
            batch_size=self.batch_size,
            num_threads=self._params.get("num_threads", 0),
        )

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"user_factors": self._user_factors, "item_factors": self._item_factors}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self._set_factors(state["user_factors"], state["item_factors"])
        if self._user_factors.shape[0] != self._n_users or self._item_factors.shape[0] != self._n_items:
            raise ValueError("saved factors do not match n_users / n_items")

    def to_implicit(self) -> Any:
        """An ``implicit`` CPU model carrying these factors (e.g. to use its other features)."""
        self._check_fitted()
        with threadpool_limits(1, "blas"):
            model = self._make_implicit(device="cpu")
        model.user_factors = self._user_factors.copy()
        model.item_factors = self._item_factors.copy()
        return model
