"""The models/ hooks tuning relies on: a per-iteration callback that can stop a fit, and interaction weighting."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import models


def _matrix(seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    m = sp.random(60, 40, density=0.15, random_state=seed, format="csr", dtype=np.float32)
    m.data = rng.integers(1, 6, size=m.nnz).astype(np.float32)
    return m


def test_iteration_callback_sees_every_iteration_and_can_stop_the_fit():
    seen = []
    with models.iteration_callback(lambda it, model: seen.append((it, model.user_factors.shape))):
        models.create_model("als", factors=4, iterations=5, seed=1).fit(_matrix())
    assert [it for it, _ in seen] == [1, 2, 3, 4, 5] and seen[0][1] == (60, 4)

    class Stop(Exception):
        pass

    def stop_at_two(it, model):
        if it == 2:
            raise Stop

    with pytest.raises(Stop), models.iteration_callback(stop_at_two):
        models.create_model("als", factors=4, iterations=5, seed=1).fit(_matrix())
    seen.clear()
    models.create_model("als", factors=4, iterations=2, seed=1).fit(_matrix())  # outside the block: no calls
    assert seen == []


@pytest.mark.parametrize("weighting", ["log", "bm25"])
def test_weighting_changes_the_fit_and_is_validated(weighting):
    m = _matrix()
    plain = models.create_model("als", factors=4, iterations=3, seed=1).fit(m)
    weighted = models.create_model("als", factors=4, iterations=3, seed=1, weighting=weighting).fit(m)
    assert not np.allclose(plain.user_factors, weighted.user_factors)
    with pytest.raises(ValueError, match="weighting"):
        models.create_model("als", weighting="tfidf")
