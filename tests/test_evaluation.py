import math

import numpy as np
import pytest
import scipy.sparse as sp

from batch.evaluation import hit_matrix, ranking_metrics


def relevant_matrix(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    indptr = np.cumsum([0] + [len(r) for r in rows])
    indices = np.array([i for r in rows for i in r], dtype=np.int32)
    return sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(len(rows), n_items))


@pytest.fixture
def example():
    # user 0: hit at rank 2 only; user 1: padding at rank 2, hit at rank 3; user 2: nothing relevant (skipped)
    recommended = np.array([[0, 1, 2], [4, -1, 5], [0, 1, 2]])
    relevant = relevant_matrix([[1, 3], [5], []], n_items=6)
    return recommended, relevant


def test_hand_computed_metrics(example):
    recommended, relevant = example
    m = ranking_metrics(recommended, relevant, ks=(2, 3), n_catalog_items=6)
    inv_log3 = 1 / math.log2(3)
    ndcg_u0 = inv_log3 / (1 + inv_log3)  # hit at rank 2; ideal: 2 relevant at ranks 1, 2

    # k = 2: user 0 has 1 hit of 2 relevant, user 1 none
    assert m["precision@2"] == pytest.approx((1 / 2 + 0) / 2)
    assert m["recall@2"] == pytest.approx((1 / 2 + 0) / 2)
    assert m["recall_capped@2"] == pytest.approx((1 / 2 + 0) / 2)
    assert m["ndcg@2"] == pytest.approx((ndcg_u0 + 0) / 2)
    assert m["map@2"] == pytest.approx(((1 / 2) / 2 + 0) / 2)
    assert m["coverage@2"] == pytest.approx(3 / 6)  # items 0, 1, 4 (user 2 not evaluated, -1 ignored)
    assert m["entropy@2"] == pytest.approx(math.log2(3))

    # k = 3: user 1 hits its only relevant item at rank 3
    assert m["precision@3"] == pytest.approx((1 / 3 + 1 / 3) / 2)
    assert m["recall@3"] == pytest.approx((1 / 2 + 1) / 2)
    assert m["recall_capped@3"] == pytest.approx((1 / 2 + 1 / 1) / 2)
    assert m["ndcg@3"] == pytest.approx((ndcg_u0 + (1 / math.log2(4)) / 1) / 2)
    assert m["map@3"] == pytest.approx(((1 / 2) / 2 + (1 / 3) / 1) / 2)
    assert m["coverage@3"] == pytest.approx(5 / 6)
    assert m["entropy@3"] == pytest.approx(math.log2(5))

    assert m["users_evaluated"] == 2
    assert m["users_skipped_no_relevant"] == 1


def test_recall_capped_differs_from_recall():
    # 3 relevant items, k = 2, both recommended items relevant
    m = ranking_metrics(np.array([[0, 1]]), relevant_matrix([[0, 1, 2]], 4), ks=(2,), n_catalog_items=4)
    assert m["recall@2"] == pytest.approx(2 / 3)
    assert m["recall_capped@2"] == pytest.approx(1.0)
    assert m["ndcg@2"] == pytest.approx(1.0)
    assert m["map@2"] == pytest.approx(1.0)
    assert m["precision@2"] == pytest.approx(1.0)


def test_perfect_and_worst_lists():
    rec = np.array([[3, 2, 0], [1, 0, 2]])
    rel = relevant_matrix([[2, 3], [1]], 5)
    m = ranking_metrics(rec, rel, ks=(1, 2, 3), n_catalog_items=5)
    for k in (1, 2, 3):
        assert m[f"ndcg@{k}"] == pytest.approx(1.0)
        assert m[f"map@{k}"] == pytest.approx(1.0)
        assert m[f"recall_capped@{k}"] == pytest.approx(1.0)
    miss = ranking_metrics(np.array([[0, 1]]), relevant_matrix([[4]], 5), ks=(2,), n_catalog_items=5)
    assert miss["ndcg@2"] == 0 and miss["map@2"] == 0 and miss["recall@2"] == 0


def test_map_uses_precision_at_each_hit():
    # hits at ranks 1 and 3 of k = 3, two relevant: AP = (1/1 + 2/3) / 2
    m = ranking_metrics(np.array([[7, 0, 8]]), relevant_matrix([[7, 8]], 10), ks=(3,), n_catalog_items=10)
    assert m["map@3"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["ndcg@3"] == pytest.approx((1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))


def test_entropy_non_uniform():
    # item 0 twice, items 1 and 2 once: p = (1/2, 1/4, 1/4) -> 1.5 bits
    m = ranking_metrics(
        np.array([[0, 1], [0, 2]]), relevant_matrix([[0], [0]], 3), ks=(2,), n_catalog_items=10
    )
    assert m["entropy@2"] == pytest.approx(1.5)
    assert m["coverage@2"] == pytest.approx(3 / 10)
    same = ranking_metrics(np.array([[0], [0]]), relevant_matrix([[0], [1]], 3), ks=(1,), n_catalog_items=3)
    assert same["entropy@1"] == 0.0


def test_no_user_with_relevant_items():
    m = ranking_metrics(np.array([[0, 1]]), relevant_matrix([[]], 3), ks=(2,), n_catalog_items=3)
    assert m["users_evaluated"] == 0 and m["users_skipped_no_relevant"] == 1
    assert math.isnan(m["precision@2"]) and m["coverage@2"] == 0.0


def test_explicit_zeros_are_not_relevant():
    rel = sp.csr_matrix(
        (np.array([0.0, 1.0], np.float32), np.array([0, 1]), np.array([0, 2])), shape=(1, 3)
    )  # stored zero at item 0
    m = ranking_metrics(np.array([[0, 1]]), rel, ks=(1, 2), n_catalog_items=3)
    assert m["precision@1"] == 0.0 and m["recall@2"] == 1.0


def test_validation_errors():
    rel = relevant_matrix([[0]], 3)
    with pytest.raises(ValueError, match="cut-off"):
        ranking_metrics(np.array([[0, 1]]), rel, ks=(3,), n_catalog_items=3)
    with pytest.raises(ValueError, match="repeats"):
        ranking_metrics(np.array([[0, 0]]), rel, ks=(2,), n_catalog_items=3)
    with pytest.raises(ValueError, match="rows"):
        ranking_metrics(np.array([[0, 1], [1, 2]]), rel, ks=(2,), n_catalog_items=3)
    with pytest.raises(ValueError, match="item"):
        ranking_metrics(np.array([[0, 5]]), rel, ks=(2,), n_catalog_items=3)


def test_vectorised_matches_loop_on_random_data():
    rng = np.random.default_rng(3)
    n_users, n_items, k_max = 500, 50, 10
    rec = np.array([rng.permutation(n_items)[:k_max] for _ in range(n_users)])
    rec[rng.random(rec.shape) < 0.05] = -1
    rel = sp.random(n_users, n_items, density=0.1, format="csr", random_state=4)
    m = ranking_metrics(rec, rel, ks=(5, 10), n_catalog_items=n_items)
    dense = rel.toarray() != 0
    assert np.array_equal(hit_matrix(rec, rel), (rec >= 0) & dense[np.arange(n_users)[:, None], rec])
    for k in (5, 10):
        ndcgs, maps = [], []
        for u in range(n_users):
            r = set(np.flatnonzero(dense[u]))
            if not r:
                continue
            hits = [int(i in r) for i in rec[u, :k]]
            c = min(k, len(r))
            dcg = sum(h / math.log2(j + 2) for j, h in enumerate(hits))
            ndcgs.append(dcg / sum(1 / math.log2(j + 2) for j in range(c)))
            maps.append(sum(h * sum(hits[: j + 1]) / (j + 1) for j, h in enumerate(hits)) / c)
        assert m[f"ndcg@{k}"] == pytest.approx(np.mean(ndcgs))
        assert m[f"map@{k}"] == pytest.approx(np.mean(maps))
        assert m["users_evaluated"] == len(ndcgs)


def test_the_evaluation_scores_a_seeded_sample_of_at_most_max_users():
    import numpy as np
    import scipy.sparse as sp

    from batch.evaluation import sample_users

    relevant = sp.random(1000, 50, density=0.05, format="csr", random_state=1, dtype=np.float32)
    relevant.data[:] = 1.0
    with_items = int((np.diff(relevant.indptr) > 0).sum())
    assert sample_users(relevant, None, 7) is relevant
    assert sample_users(relevant, with_items, 7) is relevant  # fewer users than the cap: all of them
    a, b = sample_users(relevant, 100, 7), sample_users(relevant, 100, 7)
    kept = np.flatnonzero(np.diff(a.indptr) > 0)
    assert len(kept) == 100 and (a != b).nnz == 0  # seeded: the same users every time
    assert (a[kept] != relevant[kept]).nnz == 0  # a kept user keeps all their relevant items
    other = np.flatnonzero(np.diff(sample_users(relevant, 100, 8).indptr) > 0)
    assert set(other) != set(kept)
