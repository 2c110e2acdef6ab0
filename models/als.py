"""Alternating Least Squares for implicit feedback (Hu, Koren & Volinsky 2008) via ``implicit``."""

from __future__ import annotations

from typing import Any

from implicit.cpu.als import AlternatingLeastSquares

from .base import NUM_THREADS, SEED, Param, non_negative_float, positive_int, register
from .factor import FactorRecommender


@register
class ALSRecommender(FactorRecommender):
    """``implicit.als.AlternatingLeastSquares`` (CPU).

    Params: ``factors`` (64), ``regularization`` (0.01), ``alpha`` (1.0; implicit multiplies the weights by
    it to get the confidence of observed entries), ``iterations`` (15), ``seed`` (0, implicit's
    ``random_state``), ``num_threads`` (0 = all cores), ``use_cg`` (True, conjugate-gradient solver).
    Fitting is deterministic for a given seed.
    """

    model_type = "als"
    param_specs = {
        "factors": positive_int(64),
        "regularization": non_negative_float(0.01),
        "alpha": non_negative_float(1.0),
        "iterations": positive_int(15),
        "seed": SEED,
        "num_threads": NUM_THREADS,
        "use_cg": Param(True, (bool,)),
    }

    def _make_implicit(self) -> Any:
        p = self._params
        return AlternatingLeastSquares(
            factors=p["factors"],
            regularization=p["regularization"],
            alpha=p["alpha"],
            iterations=p["iterations"],
            use_cg=p["use_cg"],
            num_threads=p["num_threads"],
            random_state=p["seed"],
        )
