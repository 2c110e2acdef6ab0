"""The drift guard's metric check: the warm-started model against its parent on the same holdout split."""

from types import SimpleNamespace

import numpy as np
import scipy.sparse as sp

import models
from batch import incremental
from batch.evaluation import score

GATE = SimpleNamespace(metric="ndcg@10", max_relative_drop=0.2, min_users_evaluated=10)


def _split(n_users=60, n_items=40, seed=0):
    """Two taste clusters: users of each interact with items of their half; holdout = 2 more of them."""
    rng = np.random.default_rng(seed)
    train, relevant = [], []
    for u in range(n_users):
        half = np.arange(n_items // 2) + (n_items // 2 if u >= n_users // 2 else 0)
        picked = rng.choice(half, size=10, replace=False)
        train += [(u, i) for i in picked[:8]]
        relevant += [(u, i) for i in picked[8:]]

    def csr(pairs):
        r, c = np.array(pairs).T
        return sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(n_users, n_items))

    return csr(train), csr(relevant)


def _parent(train):
    model = models.create_model("als", factors=8, iterations=10, regularization=0.1, seed=3).fit(train)
    users = np.array([f"u{i}" for i in range(train.shape[0])], dtype=object)
    items = np.array([f"i{i}" for i in range(train.shape[1])], dtype=object)
    return incremental.Parent(
        record={"dt": "2026-11-20"}, model=model, user_ids=users, item_ids=items, metadata={}
    )


def test_a_drifted_model_is_caught_on_the_same_split_and_a_faithful_one_passes():
    train, relevant = _split()
    parent = _parent(train)
    ks = [10]
    # faithful: today's model is the parent itself
    _, users, ids = score(parent.model, train, relevant, ks)
    same = incremental.parent_on_same_split(
        parent, parent.user_ids, parent.item_ids, train, relevant, users, ids, ks
    )
    assert same["users"] == len(users) == 60
    assert same["model"]["ndcg@10"] == same["parent"]["ndcg@10"] > 0
    assert incremental.metric_drift(same, GATE)["status"] == "ok"
    # drifted: random factors rank the clusters' items no better than chance
    drifted = models.create_model("als", factors=8, iterations=1, seed=9).fit(
        sp.csr_matrix(train.shape, dtype=np.float32)
    )
    rng = np.random.default_rng(5)
    drifted._set_factors(rng.standard_normal((60, 8)), rng.standard_normal((40, 8)))
    _, users, ids = score(drifted, train, relevant, ks)
    same = incremental.parent_on_same_split(
        parent, parent.user_ids, parent.item_ids, train, relevant, users, ids, ks
    )
    verdict = incremental.metric_drift(same, GATE)
    assert verdict["status"] == "drop" and verdict["value"] < verdict["floor"] < verdict["parent"]


def test_only_users_and_items_the_parent_knew_are_compared():
    train, relevant = _split()
    parent = _parent(train)
    # today: 10 users the parent never saw (the last ones) and one new item that everyone's holdout holds
    users_today = parent.user_ids.copy()
    users_today[-10:] = [f"new{i}" for i in range(10)]
    items_today = np.array([*parent.item_ids, "i_new"], dtype=object)
    train_t = sp.hstack([train, sp.csr_matrix((60, 1), dtype=np.float32)]).tocsr()
    relevant_t = sp.hstack([relevant, sp.csr_matrix(np.ones((60, 1), np.float32))]).tocsr()
    _, users, ids = score(parent.model, train, relevant, [10])
    ids = np.where(ids >= 0, ids, -1)
    same = incremental.parent_on_same_split(
        parent, users_today, items_today, train_t, relevant_t, users, ids, [10]
    )
    assert same["users"] == 50
    # few known users: not judged
    assert (
        incremental.metric_drift(same, SimpleNamespace(**{**vars(GATE), "min_users_evaluated": 51}))["status"]
        == "skipped"
    )
