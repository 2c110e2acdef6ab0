"""Alternating Least Squares for implicit feedback (Hu, Koren & Volinsky 2008) via ``implicit``."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from implicit.nearest_neighbours import bm25_weight

from .base import NUM_THREADS, SEED, Param, non_negative_float, positive_int, register
from .factor import FactorRecommender

WEIGHTINGS = ("none", "log", "bm25")


@register
class ALSRecommender(FactorRecommender):
    """``implicit.als.AlternatingLeastSquares`` (CPU).

    Params: ``factors`` (64), ``regularization`` (0.01), ``alpha`` (1.0; implicit multiplies the weights by
    it to get the confidence of observed entries), ``iterations`` (15), ``seed`` (0, implicit's
    ``random_state``), ``num_threads`` (0 = all cores), ``use_cg`` (True, conjugate-gradient solver).
    ``weighting`` ("none") turns the interaction weights into the matrix ALS fits on: "none" uses them as they
    are, "log" uses ``log1p(weight)`` (damps heavy users' repeated events), "bm25" the BM25 weighting of
    ``implicit.nearest_neighbours.bm25_weight`` over items x users with ``bm25_k1`` (100) and ``bm25_b``
    (0.8), as in implicit's own examples. ``device`` ("cpu"; "gpu" fits with ``implicit.gpu``'s CUDA ALS,
    which needs implicit built with CUDA and ``rmm``; it always uses conjugate gradient on the GPU, so
    ``use_cg``/``num_threads`` do not apply). Fitting is deterministic for a given seed on the CPU. The fitted
    factors are copied back to the host, so scoring, saving and loading are the same whichever device trained
    the model.
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
        "device": Param("cpu", (str,), lambda v: v in ("cpu", "gpu"), "device must be 'cpu' or 'gpu'"),
        "weighting": Param("none", (str,), lambda v: v in WEIGHTINGS, f"one of {', '.join(WEIGHTINGS)}"),
        "bm25_k1": non_negative_float(100.0),
        "bm25_b": Param(0.8, (float,), lambda v: 0.0 <= v <= 1.0, "must be in [0, 1]"),
    }

    def _confidence(self, user_items: sp.csr_matrix) -> sp.csr_matrix:
        weighting = self._params["weighting"]
        if weighting == "log":
            out = user_items.copy()
            out.data = np.log1p(out.data).astype(np.float32)
            return out
        if weighting == "bm25":
            weighted = bm25_weight(user_items.T, K1=self._params["bm25_k1"], B=self._params["bm25_b"])
            out = sp.csr_matrix(weighted.T, dtype=np.float32)
            # an item every user touched gets idf <= 0: drop it rather than fit negative confidence
            out.data = np.maximum(out.data, 0.0)
            out.eliminate_zeros()
            out.sort_indices()
            return out
        return user_items

    def _make_implicit(self, device: str | None = None) -> Any:
        p = self._params
        if (device or p["device"]) == "gpu":
            return self._make_gpu()
        return AlternatingLeastSquares(
            factors=p["factors"],
            regularization=p["regularization"],
            alpha=p["alpha"],
            iterations=p["iterations"],
            use_cg=p["use_cg"],
            num_threads=p["num_threads"],
            random_state=p["seed"],
        )

    def _make_gpu(self) -> Any:
        import implicit.gpu

        if not implicit.gpu.HAS_CUDA:
            raise RuntimeError(
                "model param device='gpu' needs implicit built with CUDA, rmm and a visible CUDA device "
                "(the GPU node pool's image); this machine has none"
            )
        from implicit.gpu.als import AlternatingLeastSquares as GpuALS

        p = self._params
        return GpuALS(
            factors=p["factors"],
            regularization=p["regularization"],
            alpha=p["alpha"],
            iterations=p["iterations"],
            random_state=p["seed"],
        )

    def _device_factors(self, array: np.ndarray) -> Any:
        if self._params["device"] != "gpu":
            return array.copy()
        import implicit.gpu

        return implicit.gpu.Matrix(np.ascontiguousarray(array, dtype=np.float32))
