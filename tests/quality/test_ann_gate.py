"""batch/checks/ann.py: recall and completeness of a freshly built index."""

from __future__ import annotations

import numpy as np
import pytest

from batch.checks.ann import recall_at_n, sample_users, validate_index
from models.ann import build_index


@pytest.fixture(scope="module")
def factors():
    rng = np.random.default_rng(5)
    centers = rng.standard_normal((30, 16)).astype(np.float32) * 2
    items = centers[rng.integers(0, 30, 3000)] + 0.3 * rng.standard_normal((3000, 16), dtype=np.float32)
    users = centers[rng.integers(0, 30, 500)] + 0.3 * rng.standard_normal((500, 16), dtype=np.float32)
    available = rng.random(3000) < 0.9
    return users, items, available


def by_name(results):
    return {r.name: r for r in results}


def test_exact_like_index_passes_with_recall_one(factors):
    users, items, available = factors
    avail = np.flatnonzero(available)
    # every cell probed: IVF is then exact
    index = build_index(
        items[avail], avail, n_items=len(items), params={"kind": "ivf_flat", "nlist": 16, "nprobe": 16}
    )
    results, fig = validate_index(index, users, items, available, 20, sample=200, seed=1)
    r = by_name(results)
    assert r["index_recall"].status == "pass" and fig["recall_at_n"] == pytest.approx(1.0)
    assert r["index_completeness"].status == "pass" and fig["missing_items"] == 0
    assert fig["users_sampled"] == 200 and fig["items_indexed"] == len(avail)


def test_bad_index_fails_the_recall_threshold(factors):
    users, items, available = factors
    avail = np.flatnonzero(available)
    # many cells, one probed: a deliberately bad index
    index = build_index(
        items[avail], avail, n_items=len(items), params={"kind": "ivf_flat", "nlist": 64, "nprobe": 1}
    )
    results, fig = validate_index(index, users, items, available, 50, sample=300, seed=1, min_recall=0.95)
    r = by_name(results)["index_recall"]
    assert r.failed and fig["recall_at_n"] < 0.95
    assert "recall@50" in r.message and r.bound == ">= 0.95"


def test_incomplete_index_fails(factors):
    users, items, available = factors
    avail = np.flatnonzero(available)
    index = build_index(items[avail[:-5]], avail[:-5], n_items=len(items), params={"kind": "exact"})
    r = by_name(validate_index(index, users, items, available, 10, sample=50)[0])["index_completeness"]
    assert r.failed and "5 available items missing" in r.message and r.value == 5
    # an unavailable item in the index fails too
    extra = np.append(avail, np.flatnonzero(~available)[0])
    index = build_index(items[extra], extra, n_items=len(items), params={"kind": "exact"})
    r = by_name(validate_index(index, users, items, available, 10, sample=50)[0])["index_completeness"]
    assert r.failed and "1 unavailable items indexed" in r.message


def test_sample_is_seeded_and_bounded():
    a = sample_users(10_000, 2000, seed=3)
    assert len(a) == 2000 and (a == sample_users(10_000, 2000, seed=3)).all()
    assert not (a == sample_users(10_000, 2000, seed=4)).all()
    assert len(sample_users(100, 2000, seed=3)) == 100
    assert set(sample_users(100, 10, 0, eligible=np.arange(50, 60))) == set(range(50, 60))


def test_recall_at_n_counts_valid_ids_only():
    approx = np.array([[1, 2, -1], [5, 6, 7]])
    exact = np.array([[1, 3, -1], [-1, -1, -1]])
    got = recall_at_n(approx, exact)
    assert got[0] == 0.5 and np.isnan(got[1])
