"""Bayesian Personalized Ranking (Rendle et al. 2009) via ``implicit``."""

from __future__ import annotations

from typing import Any

import numpy as np
from implicit.cpu.bpr import BayesianPersonalizedRanking

from .base import NUM_THREADS, SEED, non_negative_float, positive_float, positive_int, register
from .factor import FactorRecommender


@register
class BPRRecommender(FactorRecommender):
    """``implicit.bpr.BayesianPersonalizedRanking`` (CPU).

    Params: ``factors`` (64), ``learning_rate`` (0.01), ``regularization`` (0.01), ``iterations`` (100),
    ``seed`` (0), ``num_threads`` (0 = all cores). ``implicit`` appends an item-bias column, so the stored
    factor matrices have ``factors + 1`` columns (users hold 1.0 there).

    BPR's SGD is "hogwild" across threads: fitting is reproducible for a seed only with ``num_threads=1``.
    """

    model_type = "bpr"
    param_specs = {
        "factors": positive_int(64),
        "learning_rate": positive_float(0.01),
        "regularization": non_negative_float(0.01),
        "iterations": positive_int(100),
        "seed": SEED,
        "num_threads": NUM_THREADS,
    }

    def _initial_factors(self, rng: np.random.Generator, n: int, width: int, side: str) -> np.ndarray:
        """As implicit's BPR draws them: uniform [-0.5, 0.5) / factors; a user's last column (it multiplies the
        item bias) is 1."""
        out = (rng.random((n, width), dtype=np.float32) - np.float32(0.5)) / np.float32(
            self._params["factors"]
        )
        if side == "user":
            out[:, -1] = 1.0
        return out

    def _make_implicit(self, device: str | None = None) -> Any:
        p = self._params
        return BayesianPersonalizedRanking(
            factors=p["factors"],
            learning_rate=p["learning_rate"],
            regularization=p["regularization"],
            iterations=p["iterations"],
            num_threads=p["num_threads"],
            random_state=p["seed"],
        )
