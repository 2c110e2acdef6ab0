import io
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

import models
from models import MODEL_TYPES, Recommender, create_model, load_model
from models.topk import select_topn, topk_among, topk_scores

SMALL = {"als": {"factors": 8, "iterations": 4}, "bpr": {"factors": 8, "iterations": 5}}


@pytest.fixture(scope="module")
def user_items() -> sp.csr_matrix:
    rng = np.random.default_rng(0)
    n_users, n_items = 300, 120
    # popularity-skewed random interactions with count weights
    p = 1.0 / np.arange(1, n_items + 1)
    p /= p.sum()
    rows, cols = [], []
    for u in range(n_users):
        items = rng.choice(n_items, size=rng.integers(3, 15), replace=False, p=p)
        rows += [u] * len(items)
        cols += list(items)
    data = rng.integers(1, 5, size=len(rows)).astype(np.float32)
    return sp.csr_matrix((data, (rows, cols)), shape=(n_users, n_items))


# The shared suite runs for every model the zoo registers (like implicit's RecommenderBaseTestMixin): a model added
# with @register is tested by the parametrized tests below without touching this file.
ALL_MODELS = sorted(MODEL_TYPES)


@pytest.fixture(scope="module")
def fitted(user_items):
    out = {}
    for t in ALL_MODELS:
        try:
            out[t] = create_model(t, **SMALL.get(t, {})).fit(user_items)
        except ImportError as e:  # a backend whose library or device is absent here (e.g. CUDA)
            out[t] = e
    return out


def _fitted(fitted, model_type):
    model = fitted[model_type]
    if isinstance(model, ImportError):
        pytest.skip(f"{model_type}: {model}")
    return model


def reference_topk(scores: np.ndarray, N: int):
    """Brute force: order by (-score, item), -inf = not eligible."""
    ids = np.full((len(scores), N), -1, np.int32)
    vals = np.full((len(scores), N), -np.inf, np.float32)
    for r, row in enumerate(scores):
        order = np.lexsort((np.arange(len(row)), -row))
        order = order[np.isfinite(row[order])][:N]
        ids[r, : len(order)] = order
        vals[r, : len(order)] = row[order]
    return ids, vals


def test_registry_and_exports():
    assert {"als", "bpr", "popularity", "itemknn"} <= set(MODEL_TYPES)
    assert isinstance(create_model("als"), Recommender)
    assert create_model("als").params["factors"] == 64
    assert models.load_model is load_model


def test_unknown_type_lists_known():
    with pytest.raises(ValueError, match="unknown model type 'nope'.*als.*bpr.*popularity"):
        create_model("nope")


def test_unknown_and_invalid_params():
    with pytest.raises(ValueError, match="factorz"):
        create_model("als", factorz=3)
    with pytest.raises(ValueError, match="factors"):
        create_model("als", factors=0)
    with pytest.raises(ValueError, match="by"):
        create_model("popularity", by="clicks")
    with pytest.raises(ValueError, match="use_cg"):
        create_model("als", use_cg="yes")
    assert create_model("als", regularization=1).params["regularization"] == 1.0


def test_not_fitted():
    with pytest.raises(models.NotFittedError):
        create_model("popularity").recommend(np.arange(2), sp.csr_matrix((2, 3)), 2)


@pytest.mark.parametrize("model_type", ALL_MODELS)
def test_interface_shapes_and_filters(fitted, user_items, model_type):
    model = _fitted(fitted, model_type)
    assert (model.n_users, model.n_items) == user_items.shape
    userids = np.array([0, 5, 7, 299])
    filt = np.array([0, 1, 2, 3])
    ids, scores = model.recommend(userids, user_items[userids], 10, filter_items=filt)
    assert ids.shape == scores.shape == (4, 10)
    assert ids.dtype == np.int32 and scores.dtype == np.float32
    assert not np.isin(ids, filt).any()
    for row, u in zip(ids, userids, strict=True):
        assert not set(row) & set(user_items[u].indices)
    assert np.all(np.diff(scores, axis=1) <= 0)
    sim_ids, sim_scores = model.similar_items(np.array([4, 9]), 5, filter_items=np.array([0]))
    assert sim_ids.shape == (2, 5)
    assert 4 not in sim_ids[0] and 9 not in sim_ids[1] and not (sim_ids == 0).any()
    if model_type in ("als", "bpr"):
        assert model.user_factors.flags.c_contiguous and model.user_factors.dtype == np.float32
        assert model.item_factors.shape[0] == model.n_items
    else:
        assert model.user_factors is None and model.item_factors is None


@pytest.mark.parametrize("model_type", ALL_MODELS)
def test_save_load_round_trip(fitted, user_items, tmp_path, model_type):
    model = _fitted(fitted, model_type)
    path = tmp_path / "model.bin"
    model.save(path)
    assert path.exists()  # no suffix appended
    buf = io.BytesIO()
    model.save(buf)
    buf.seek(0)
    userids = np.arange(0, 300, 7)
    expected = model.recommend(userids, user_items[userids], 12)
    for loaded in (load_model(path), load_model(buf), type(model).load(path)):
        assert type(loaded) is type(model) and loaded.params == model.params
        got = loaded.recommend(userids, user_items[userids], 12)
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
    with np.load(path, allow_pickle=False) as npz:
        assert str(npz["__model_type__"]) == model_type
    other = "popularity" if model_type != "popularity" else "als"
    with pytest.raises(ValueError, match="not"):
        MODEL_TYPES[other].load(path)


def test_seeded_determinism(user_items):
    a = create_model("als", factors=8, iterations=3, seed=7).fit(user_items)
    b = create_model("als", factors=8, iterations=3, seed=7).fit(user_items)
    c = create_model("als", factors=8, iterations=3, seed=8).fit(user_items)
    np.testing.assert_array_equal(a.user_factors, b.user_factors)
    np.testing.assert_array_equal(a.item_factors, b.item_factors)
    assert not np.array_equal(a.item_factors, c.item_factors)
    d = create_model("bpr", factors=8, iterations=3, seed=7, num_threads=1).fit(user_items)
    e = create_model("bpr", factors=8, iterations=3, seed=7, num_threads=1).fit(user_items)
    np.testing.assert_array_equal(d.item_factors, e.item_factors)


@pytest.mark.parametrize("model_type", ["als", "bpr"])
def test_topk_equals_implicit_recommend(fitted, user_items, model_type):
    model = _fitted(fitted, model_type)
    imp = model.to_implicit()
    userids = np.arange(user_items.shape[0])
    N = 20  # every user has >= 105 eligible items
    filt = np.array([3, 10, 50])
    for filter_items in (None, filt):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exp_ids, exp_scores = imp.recommend(userids, user_items[userids], N, filter_items=filter_items)
        ids, scores = model.recommend(userids, user_items[userids], N, filter_items=filter_items)
        np.testing.assert_array_equal(ids, exp_ids)
        np.testing.assert_allclose(scores, exp_scores, rtol=1e-5, atol=1e-6)


def test_padding_when_few_items_eligible():
    X = sp.csr_matrix(np.array([[1, 0, 2, 0, 0], [0, 0, 0, 0, 0]], dtype=np.float32))
    model = create_model("popularity").fit(X)
    ids, scores = model.recommend(np.array([0, 1]), X, 6, filter_items=np.array([4]))
    # user 0: items 0, 2 liked, 4 filtered -> 1 then 3 (both score 0, lower index first)
    np.testing.assert_array_equal(ids[0], [1, 3, -1, -1, -1, -1])
    assert np.all(np.isneginf(scores[0, 2:]))
    # user 1: 2 (score 2), 0 (score 1), then 1, 3 at 0
    np.testing.assert_array_equal(ids[1], [2, 0, 1, 3, -1, -1])
    np.testing.assert_array_equal(scores[1, :4], [2, 1, 0, 0])
    sim_ids, _ = model.similar_items(np.array([2]), 10)
    np.testing.assert_array_equal(sim_ids[0], [0, 1, 3, 4, -1, -1, -1, -1, -1, -1])
    als = create_model("als", factors=4, iterations=2).fit(X)
    ids, scores = als.recommend(np.array([0]), X[[0]], 6, filter_items=np.array([4]))
    assert sorted(ids[0, :2]) == [1, 3] and (ids[0, 2:] == -1).all() and np.isneginf(scores[0, 2:]).all()


def test_popularity_behaviour(user_items):
    by_weight = create_model("popularity").fit(user_items)
    by_users = create_model("popularity", by="users").fit(user_items)
    np.testing.assert_allclose(by_weight.item_scores, np.asarray(user_items.sum(axis=0)).ravel())
    np.testing.assert_array_equal(by_users.item_scores, np.bincount(user_items.indices, minlength=120))
    ranking = np.lexsort((np.arange(120), -by_weight.item_scores))
    ids, _ = by_weight.recommend(np.array([0]), user_items[[0]], 5)
    expected = [i for i in ranking if i not in set(user_items[0].indices)][:5]
    np.testing.assert_array_equal(ids[0], expected)
    ids, _ = by_weight.recommend(np.array([0]), user_items[[0]], 5, filter_already_liked_items=False)
    np.testing.assert_array_equal(ids[0], ranking[:5])
    sim, _ = by_weight.similar_items(np.array([ranking[0]]), 3)
    np.testing.assert_array_equal(sim[0], ranking[1:4])


def test_itemknn_scores_match_brute_force(fitted, user_items):
    model = fitted["itemknn"]
    userids = np.arange(40)
    dense = (user_items[userids] @ model.similarity).toarray().astype(np.float32)
    dense[user_items[userids].toarray() != 0] = -np.inf
    exp_ids, exp_scores = reference_topk(dense, 15)
    ids, scores = model.recommend(userids, user_items[userids], 15)
    np.testing.assert_array_equal(ids, exp_ids)
    np.testing.assert_allclose(scores, exp_scores, rtol=1e-6)


def test_recommend_input_errors(fitted, user_items):
    model = fitted["als"]
    with pytest.raises(IndexError):
        model.recommend(np.array([300]), user_items[:1], 5)
    with pytest.raises(ValueError, match="columns"):
        model.recommend(np.array([0]), user_items[:1, :10], 5)
    with pytest.raises(ValueError, match="one row per requested user"):
        model.recommend(np.array([0, 1]), user_items, 5)
    with pytest.raises(IndexError):
        model.recommend(np.array([0]), user_items[:1], 5, filter_items=np.array([500]))


@pytest.mark.parametrize("n_items,N", [(50, 5), (3000, 7), (5000, 40), (2000, 300)])
def test_topk_scores_exact_with_ties(n_items, N):
    rng = np.random.default_rng(n_items)
    # small integer factors: many exactly tied scores
    U = rng.integers(-2, 3, size=(333, 4)).astype(np.float32)
    V = rng.integers(-2, 3, size=(n_items, 4)).astype(np.float32)
    exclude = sp.random(333, n_items, density=0.01, format="csr", random_state=1)
    filt = rng.choice(n_items, size=n_items // 10, replace=False)
    full = U @ V.T
    full[exclude.toarray() != 0] = -np.inf
    full[:, filt] = -np.inf
    exp_ids, exp_scores = reference_topk(full, N)
    for batch_size, threads in ((512, 0), (37, 1), (100, 3)):
        ids, scores = topk_scores(U, V, N, exclude, filt, batch_size=batch_size, num_threads=threads)
        np.testing.assert_array_equal(ids, exp_ids)
        np.testing.assert_array_equal(scores, exp_scores)


def test_popularity_ranks_exactly_whatever_a_user_excludes():
    rng = np.random.default_rng(4)
    n_users, n_items, N = 40, 3000, 20
    X = sp.csr_matrix(
        (
            rng.integers(1, 4, 6000).astype(np.float32),
            (rng.integers(0, 300, 6000), rng.integers(0, n_items, 6000)),
        ),
        shape=(300, n_items),
    )
    model = create_model("popularity").fit(X)  # integer counts: many tied scores
    # rows exclude 0 .. 600 items, the widest mostly among the most popular
    order = np.lexsort((np.arange(n_items), -model._scores))
    rows, cols = [], []
    for u in range(n_users):
        width = int(rng.integers(0, 600)) if u % 3 else 0
        picked = order[: width * 2][rng.permutation(width * 2)[:width]] if width else []
        rows += [u] * len(picked)
        cols += list(picked)
    seen = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))
    filt = order[[0, 5, 50, 700]]
    full = np.tile(model._scores, (n_users, 1))
    full[seen.toarray() != 0] = -np.inf
    full[:, filt] = -np.inf
    exp_ids, exp_scores = reference_topk(full, N)
    ids, scores = model.recommend(np.arange(n_users), seen, N, filter_items=filt)
    np.testing.assert_array_equal(ids, exp_ids)
    np.testing.assert_array_equal(scores, exp_scores)


def test_topk_among_ranks_own_and_shared_candidates_only():
    rng = np.random.default_rng(7)
    n_users, n_items, f, N = 300, 2000, 8, 10
    U = rng.standard_normal((n_users, f)).astype(np.float32)
    V = rng.standard_normal((n_items, f)).astype(np.float32)
    own = rng.integers(0, n_items, size=(n_users, 15))
    own[::3, 10:] = -1  # shorter previous lists
    own[5] = -1  # a user without a previous list: shared items only
    shared = rng.choice(n_items, size=120, replace=False)
    own[7, :5] = shared[:5]  # in both: counts once
    exclude = sp.random(n_users, n_items, density=0.05, format="csr", random_state=3)
    exclude = (exclude + sp.csr_matrix((np.ones(3), ([9, 9, 9], own[9, :3])), shape=exclude.shape)).tocsr()
    filt = np.concatenate([rng.choice(n_items, size=100, replace=False), own[11, :2], shared[:2]])
    # the reference: the full score matrix with every item outside the user's candidates made ineligible
    full = np.full((n_users, n_items), -np.inf, np.float32)
    for u in range(n_users):
        cand = np.union1d(own[u][own[u] >= 0], shared)
        full[u, cand] = U[u] @ V[cand].T
    full[exclude.toarray() != 0] = -np.inf
    full[:, filt] = -np.inf
    exp_ids, exp_scores = reference_topk(full, N)
    for batch_size in (512, 41):
        ids, scores = topk_among(U, V, N, own, shared, exclude, filt, batch_size=batch_size)
        np.testing.assert_allclose(scores, exp_scores, rtol=1e-5)
        # same items (order may differ only between exactly tied scores: none with random factors)
        np.testing.assert_array_equal(ids, exp_ids)
    assert not np.isin(ids[9], own[9, :3]).any()
    assert len(set(ids[7].tolist())) == N  # no item twice
    with pytest.raises(IndexError):
        topk_among(U, V, N, own, np.array([n_items]))


def test_select_topn_handles_mostly_excluded_rows():
    rng = np.random.default_rng(1)
    scores = rng.standard_normal((20, 4096)).astype(np.float32)
    scores[:10, 3:] = -np.inf  # only 3 eligible items in the first rows
    exp_ids, exp_scores = reference_topk(scores, 10)
    ids, vals = select_topn(scores, 10)
    np.testing.assert_array_equal(ids, exp_ids)
    np.testing.assert_array_equal(vals, exp_scores)


def test_select_topn_treats_nan_as_not_eligible():
    rng = np.random.default_rng(2)
    scores = rng.standard_normal((6, 2048)).astype(np.float32)
    scores[0, :] = np.nan
    scores[1, 5:] = np.nan
    scores[2, ::2] = np.nan
    scores[3, 7] = np.nan  # a NaN in the block that holds the row's best item
    scores[3, 7 + 256] = 100.0
    scores[4, [1, 2, 3]] = np.nan
    scores[5, 7], scores[5, 7 + 256] = np.nan, 100.0  # NaN block holds the best item ...
    scores[5, 3], scores[5, 3 + 256] = 50.0, 40.0  # ... and another block the next two
    clean = np.where(np.isnan(scores), -np.inf, scores).astype(np.float32)
    for N in (3, 8):
        exp_ids, exp_scores = reference_topk(clean, N)
        ids, vals = select_topn(scores, N)
        np.testing.assert_array_equal(ids, exp_ids)
        np.testing.assert_array_equal(vals, exp_scores)
    assert select_topn(scores[5:6], 3)[0].tolist() == [[263, 3, 259]]


def test_non_finite_factors_rejected(fitted):
    model = create_model("als", factors=2)
    bad = np.full((3, 2), np.nan, np.float32)
    with pytest.raises(ValueError, match="NaN"):
        model._set_factors(bad, bad)


def test_fit_more_continues_from_the_fitted_factors():
    rng = np.random.default_rng(0)
    dense = (rng.random((80, 60)) < 0.1).astype(np.float32)
    X = sp.csr_matrix(dense)
    base = create_model("als", factors=8, iterations=5, seed=1).fit(X)
    before = base.user_factors.copy()
    more = dense.copy()
    more[:, :5] += rng.random((80, 5)) < 0.3
    X2 = sp.csr_matrix(more)
    base.fit_more(X2, iterations=2)
    assert base.user_factors.shape == before.shape and not np.allclose(base.user_factors, before)
    # a warm start is not a fresh fit of the same length
    fresh = create_model("als", factors=8, iterations=2, seed=1).fit(X2)
    assert not np.allclose(base.user_factors, fresh.user_factors)
    with pytest.raises(ValueError, match="same users x items"):
        base.fit_more(X2[:10], iterations=1)
    # models without iterations fit again
    pop = create_model("popularity").fit(X)
    pop.fit_more(X2, iterations=3)
    np.testing.assert_allclose(pop.item_scores, np.asarray(X2.sum(axis=0)).ravel())
