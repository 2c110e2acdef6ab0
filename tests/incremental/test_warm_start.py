"""Warm start by id (models/factor.py): factors follow the ids, new ids get the seeded initialisation."""

import numpy as np
import pytest
import scipy.sparse as sp

import models


def _matrix(n_users, n_items, seed=0):
    rng = np.random.default_rng(seed)
    m = sp.random(n_users, n_items, density=0.1, random_state=rng, format="csr", dtype=np.float32)
    m.data[:] = 1.0
    return m


@pytest.mark.parametrize("model_type", ["als", "bpr"])
def test_factors_follow_ids_and_new_ids_start_seeded(model_type):
    parent = models.create_model(model_type, factors=8, iterations=2, seed=1).fit(_matrix(40, 30))
    parent_users = np.array([f"u{i:03d}" for i in range(40)], dtype=object)
    parent_items = np.array([f"i{i:03d}" for i in range(30)], dtype=object)
    # today: users 5.. kept (shuffled order), two new users; items reversed, one gone, one new
    users = np.array(["new_a", *parent_users[5:][::-1], "new_b"], dtype=object)
    items = np.array([*parent_items[1:][::-1], "i_new"], dtype=object)
    child = models.create_model(model_type, factors=8, iterations=2, seed=1)
    counts = child.start_from(
        parent, parent_user_ids=parent_users, parent_item_ids=parent_items, user_ids=users, item_ids=items
    )
    assert counts == {"users_matched": 35, "users_new": 2, "items_matched": 29, "items_new": 1}
    assert (child.n_users, child.n_items) == (37, 30)
    for row, uid in enumerate(users):
        if uid.startswith("u"):
            np.testing.assert_array_equal(child.user_factors[row], parent.user_factors[int(uid[1:])])
    for row, iid in enumerate(items[:-1]):
        np.testing.assert_array_equal(child.item_factors[row], parent.item_factors[int(iid[1:])])
    # new ids: the seeded initialisation, the same every time, not a copy of anyone's factors
    again = models.create_model(model_type, factors=8, iterations=2, seed=1)
    again.start_from(
        parent, parent_user_ids=parent_users, parent_item_ids=parent_items, user_ids=users, item_ids=items
    )
    np.testing.assert_array_equal(child.user_factors[0], again.user_factors[0])
    np.testing.assert_array_equal(child.item_factors[-1], again.item_factors[-1])
    assert np.abs(child.item_factors[-1]).max() < 0.6 and np.abs(child.item_factors[-1]).sum() > 0
    # and training continues from there
    child.fit_more(_matrix(37, 30, seed=2), iterations=1)
    assert np.isfinite(child.user_factors).all()


def test_warm_start_refuses_a_mismatched_parent():
    parent = models.create_model("als", factors=8, iterations=1).fit(_matrix(10, 10))
    ids = np.array([str(i) for i in range(10)], dtype=object)
    with pytest.raises(ValueError, match="id maps"):
        models.create_model("als", factors=8).start_from(
            parent, parent_user_ids=ids[:5], parent_item_ids=ids, user_ids=ids, item_ids=ids
        )
    with pytest.raises(ValueError, match="cannot warm-start"):
        models.create_model("bpr", factors=8).start_from(
            parent, parent_user_ids=ids, parent_item_ids=ids, user_ids=ids, item_ids=ids
        )
