"""The recommender interface shared by every model, plus the registry, save and load.

A model is a plain Python object usable from a notebook::

    from models import create_model, load_model

    model = create_model("als", factors=32, seed=1).fit(user_items)
    ids, scores = model.recommend(np.arange(10), user_items[:10], N=20)
    model.save("als.npz")
    same = load_model("als.npz")

Conventions shared by all models:

* ``user_items`` is a ``scipy.sparse.csr_matrix`` with users as rows and items as columns; values are
  float32 confidence weights (e.g. interaction counts).
* ``recommend`` and ``similar_items`` return ``(ids, scores)``: int32 item indices and float32 scores, shape
  ``(len(query), N)``, best first. Where fewer than ``N`` items are eligible the rows are padded with id ``-1``
  and score ``-inf``. Equal scores are ordered by lower item index, so results are deterministic.
* Models are saved as a single ``.npz`` (``np.savez``, no pickle): the arrays of the fitted state plus the
  model type and its parameters as a JSON string. :func:`load_model` dispatches on the stored type.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp

FORMAT_VERSION = 1

_META_TYPE = "__model_type__"
_META_PARAMS = "__params__"
_META_VERSION = "__format_version__"

FileLike = str | os.PathLike | IO[bytes]


@dataclass(frozen=True)
class Param:
    """Declaration of one model parameter: its default, accepted types and an optional check."""

    default: Any
    types: tuple[type, ...]
    check: Callable[[Any], bool] | None = None
    doc: str = ""
    allow_none: bool = False

    def validate(self, name: str, value: Any) -> Any:
        if value is None and self.allow_none:
            return None
        # bool is an int subclass: only accept it where bool is declared
        if isinstance(value, bool) and bool not in self.types:
            raise ValueError(f"parameter {name!r} must be {self._type_names()}, got bool {value!r}")
        if isinstance(value, np.generic):
            value = value.item()
        if not isinstance(value, self.types):
            if float in self.types and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            else:
                raise ValueError(
                    f"parameter {name!r} must be {self._type_names()}, got {type(value).__name__} {value!r}"
                )
        if self.check is not None and not self.check(value):
            raise ValueError(f"parameter {name!r} has an invalid value {value!r}: {self.doc}".rstrip(": "))
        return value

    def _type_names(self) -> str:
        return " or ".join(t.__name__ for t in self.types)


def positive_int(default: int, doc: str = "must be a positive integer") -> Param:
    return Param(default, (int,), lambda v: v > 0, doc)


def non_negative_int(default: int, doc: str = "must be >= 0") -> Param:
    return Param(default, (int,), lambda v: v >= 0, doc)


def non_negative_float(default: float, doc: str = "must be >= 0") -> Param:
    return Param(default, (float,), lambda v: v >= 0 and np.isfinite(v), doc)


def positive_float(default: float, doc: str = "must be > 0") -> Param:
    return Param(default, (float,), lambda v: v > 0 and np.isfinite(v), doc)


SEED = Param(0, (int,), lambda v: 0 <= v < 2**32, "seed must be in [0, 2**32)")
NUM_THREADS = non_negative_int(0, "num_threads must be >= 0 (0 = all cores)")


class NotFittedError(RuntimeError):
    """Raised when a model is used before ``fit`` (or ``load``)."""


class Recommender(ABC):
    """Abstract recommender.

    Subclasses set ``model_type`` (the registry key), declare ``param_specs`` and implement ``fit``,
    ``_get_state``/``_set_state`` (the arrays that ``save`` writes) and the scoring methods.
    """

    model_type: ClassVar[str]
    param_specs: ClassVar[dict[str, Param]] = {}

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.param_specs))
        if unknown:
            raise ValueError(
                f"unknown parameter(s) for model {self.model_type!r}: {', '.join(unknown)}; "
                f"known: {', '.join(sorted(self.param_specs)) or '(none)'}"
            )
        self._params: dict[str, Any] = {}
        for name, spec in self.param_specs.items():
            value = params.get(name, spec.default)
            self._params[name] = spec.validate(name, value)
        self._n_users: int | None = None
        self._n_items: int | None = None

    # -- parameters and shape ------------------------------------------------------------------------------
    @property
    def params(self) -> dict[str, Any]:
        """A copy of the validated parameters (defaults filled in)."""
        return dict(self._params)

    @property
    def is_fitted(self) -> bool:
        return self._n_items is not None

    @property
    def n_users(self) -> int:
        self._check_fitted()
        assert self._n_users is not None
        return self._n_users

    @property
    def n_items(self) -> int:
        self._check_fitted()
        assert self._n_items is not None
        return self._n_items

    @property
    def user_factors(self) -> np.ndarray | None:
        """(n_users, factors) float32 for factor models, None otherwise."""
        return None

    @property
    def item_factors(self) -> np.ndarray | None:
        """(n_items, factors) float32 for factor models, None otherwise."""
        return None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params.items())
        return f"{type(self).__name__}({args})"

    # -- the interface -------------------------------------------------------------------------------------
    @abstractmethod
    def fit(self, user_items: sp.csr_matrix, *, show_progress: bool = False) -> Self:
        """Fit on a (users x items) CSR matrix of float32 confidence weights; returns self."""

    def fit_more(self, user_items: sp.csr_matrix, *, iterations: int, show_progress: bool = False) -> Self:
        """Continue training from the current state on ``user_items`` (same users x items shape) for
        ``iterations`` more passes: a warm start, e.g. after a holdout evaluation, to take in the last days
        without paying a full fit. Models without iterations simply fit again."""
        return self.fit(user_items, show_progress=show_progress)

    @abstractmethod
    def recommend(
        self,
        userids: np.ndarray,
        user_items: sp.csr_matrix,
        N: int,
        *,
        filter_already_liked_items: bool = True,
        filter_items: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``N`` items for each user in ``userids``.

        ``user_items`` has one row per requested user (row ``k`` holds the items of ``userids[k]``), as in
        ``implicit``: a caller streaming users in blocks never builds a matrix of every user. With
        ``filter_already_liked_items`` the stored items of each user's row are never returned. ``filter_items``
        are item indices never returned. Returns int32 ids and float32 scores of shape ``(len(userids), N)``,
        best first, padded with ``-1`` / ``-inf``.
        """

    @abstractmethod
    def similar_items(
        self, itemids: np.ndarray, N: int, *, filter_items: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``N`` most similar items for each item in ``itemids`` (never the item itself)."""

    @abstractmethod
    def _get_state(self) -> dict[str, np.ndarray]:
        """Arrays describing the fitted model (saved with ``np.savez``)."""

    @abstractmethod
    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore from the arrays returned by ``_get_state``."""

    # -- persistence ---------------------------------------------------------------------------------------
    def save(self, file: FileLike) -> None:
        """Write the fitted model as an ``.npz`` to a path (written as given, no suffix added) or a binary file."""
        self._check_fitted()
        state = self._get_state()
        for key in state:
            if key.startswith("__"):
                raise ValueError(f"state key {key!r} is reserved")
        arrays = {
            _META_TYPE: np.array(self.model_type),
            _META_PARAMS: np.array(json.dumps(self._params, sort_keys=True)),
            _META_VERSION: np.array(FORMAT_VERSION, dtype=np.int64),
            "n_users": np.array(self.n_users, dtype=np.int64),
            "n_items": np.array(self.n_items, dtype=np.int64),
            **state,
        }
        if isinstance(file, str | os.PathLike):
            with open(file, "wb") as fh:
                np.savez(fh, **arrays)
        else:
            np.savez(file, **arrays)

    @classmethod
    def load(cls, file: FileLike) -> Recommender:
        """Load a model saved by ``save``; on a subclass the stored type must match it."""
        model_type, params, arrays = _read_npz(file)
        if cls is not Recommender and model_type != cls.model_type:
            raise ValueError(f"file holds a {model_type!r} model, not {cls.model_type!r}")
        model_cls = _lookup(model_type)
        model = model_cls(**params)
        model._n_users = int(arrays.pop("n_users"))
        model._n_items = int(arrays.pop("n_items"))
        model._set_state(arrays)
        return model

    # -- helpers for subclasses ----------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if self._n_items is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() or load a saved model")

    def _check_userids(self, userids: np.ndarray, user_items: sp.csr_matrix | None) -> np.ndarray:
        userids = np.asarray(userids)
        if userids.ndim == 0:
            userids = userids.reshape(1)
        if userids.ndim != 1 or (userids.size and not np.issubdtype(userids.dtype, np.integer)):
            raise ValueError("userids must be a 1-d array of integer user indices")
        userids = userids.astype(np.int64, copy=False)
        if userids.size and (userids.min() < 0 or userids.max() >= self.n_users):
            raise IndexError(f"userids out of range [0, {self.n_users})")
        if user_items is not None:
            if not sp.issparse(user_items) or user_items.format != "csr":
                raise ValueError("user_items must be a scipy.sparse CSR matrix")
            if user_items.shape[1] != self.n_items:
                raise ValueError(
                    f"user_items has {user_items.shape[1]} columns, the model {self.n_items} items"
                )
            if user_items.shape[0] != len(userids):
                raise ValueError(
                    f"user_items has {user_items.shape[0]} rows for {len(userids)} userids: pass one row per "
                    "requested user (user_items[userids] of the full matrix), as implicit does"
                )
        return userids

    def _check_itemids(self, itemids: np.ndarray, what: str = "itemids") -> np.ndarray:
        itemids = np.asarray(itemids)
        if itemids.ndim == 0:
            itemids = itemids.reshape(1)
        if itemids.ndim != 1 or (itemids.size and not np.issubdtype(itemids.dtype, np.integer)):
            raise ValueError(f"{what} must be a 1-d array of integer item indices")
        itemids = itemids.astype(np.int64, copy=False)
        if itemids.size and (itemids.min() < 0 or itemids.max() >= self.n_items):
            raise IndexError(f"{what} out of range [0, {self.n_items})")
        return itemids

    def _check_filter_items(self, filter_items: np.ndarray | None) -> np.ndarray | None:
        if filter_items is None:
            return None
        return self._check_itemids(filter_items, "filter_items")


def check_user_items(user_items: sp.spmatrix) -> sp.csr_matrix:
    """Validate a training matrix: CSR (other sparse formats are converted), float32, finite, non-negative."""
    if not sp.issparse(user_items):
        raise ValueError("user_items must be a scipy.sparse matrix (users x items)")
    user_items = sp.csr_matrix(user_items, dtype=np.float32)
    if user_items.shape[0] == 0 or user_items.shape[1] == 0:
        raise ValueError(f"user_items is empty: shape {user_items.shape}")
    if user_items.nnz and (not np.all(np.isfinite(user_items.data)) or user_items.data.min() < 0):
        raise ValueError("user_items values must be finite and non-negative")
    user_items.sum_duplicates()
    user_items.sort_indices()
    return user_items


# -- registry ----------------------------------------------------------------------------------------------
MODEL_TYPES: dict[str, type[Recommender]] = {}


def register(cls: type[Recommender]) -> type[Recommender]:
    """Class decorator adding a model to the registry under its ``model_type``."""
    key = cls.model_type
    known = MODEL_TYPES.get(key)
    if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"model type {key!r} registered twice ({known.__qualname__}, {cls.__qualname__})")
    MODEL_TYPES[key] = cls
    return cls


def _lookup(model_type: str) -> type[Recommender]:
    try:
        return MODEL_TYPES[model_type]
    except KeyError:
        raise ValueError(
            f"unknown model type {model_type!r}; known: {', '.join(sorted(MODEL_TYPES))}"
        ) from None


def create_model(model_type: str, **params: Any) -> Recommender:
    """Create an unfitted model of a registered type; unknown type or parameter -> ValueError."""
    return _lookup(model_type)(**params)


def _read_npz(file: FileLike) -> tuple[str, dict[str, Any], dict[str, np.ndarray]]:
    with np.load(file, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    try:
        model_type = str(arrays.pop(_META_TYPE))
        params = json.loads(str(arrays.pop(_META_PARAMS)))
        version = int(arrays.pop(_META_VERSION))
    except KeyError as exc:
        raise ValueError(f"not a saved model: missing {exc.args[0]!r}") from None
    if version > FORMAT_VERSION:
        raise ValueError(f"model file format {version} is newer than this code ({FORMAT_VERSION})")
    return model_type, params, arrays


def load_model(file: FileLike) -> Recommender:
    """Load any saved model, dispatching on the stored model type."""
    return Recommender.load(file)
