import numpy as np
import pyarrow.compute as pc
import pytest

from batch.data import SyntheticSpec, generate, rating_to_event, read_movielens
from batch.errors import InputDataError


def test_generation_is_seeded_and_looks_like_traffic():
    spec = SyntheticSpec(users=2000, items=800, days=20, seed=11)
    events, items = generate(spec)
    again, _ = generate(spec)
    assert events.equals(again)
    other, _ = generate(SyntheticSpec(users=2000, items=800, days=20, seed=12))
    assert not events.equals(other)

    df = events.to_pandas().dropna(subset=["user_id"])
    # power-law popularity: the top 10% of items take a large share of events
    per_item = df["item_id"].value_counts().to_numpy()
    assert per_item[: len(per_item) // 10].sum() / per_item.sum() > 0.35
    # heavy-tailed activity: the most active user does far more than the median one
    per_user = df["user_id"].value_counts()
    assert per_user.max() > 5 * per_user.median()
    # views dominate, bookmarks are rarest
    kinds = df["event_type"].value_counts()
    assert kinds["view"] > kinds["like"] > kinds["bookmark"] > 0
    # timestamps cover the days of the period
    days = df["ts"].dt.date.nunique()
    assert days >= spec.days - 1
    # some items leave sale; some arrive during the period
    assert pc.sum(pc.is_valid(items["available_until"])).as_py() > 0
    # a little dirt, as in real logs
    assert events.num_rows - len(df) > 0


def test_taste_clusters_give_signal():
    """Users' events concentrate on a few items' neighbourhoods: co-occurrence beats independence."""
    events, _ = generate(SyntheticSpec(users=1500, items=600, days=20, seed=5, clusters=12))
    df = events.to_pandas().dropna(subset=["user_id"])
    df = df[df["item_id"] != ""].drop_duplicates(["user_id", "item_id"])
    top = df["item_id"].value_counts().index[:200]
    m = (
        df[df["item_id"].isin(top)]
        .assign(v=1)
        .pivot_table(index="user_id", columns="item_id", values="v", fill_value=0)
        .to_numpy(float)
    )
    co = m.T @ m
    expected = np.outer(m.sum(0), m.sum(0)) / m.shape[0]
    np.fill_diagonal(co, 0)
    np.fill_diagonal(expected, 0)
    # some item pairs co-occur far more than chance would have it
    assert (co > 3 * expected + 3).sum() > 100


def test_rating_mapping():
    assert list(rating_to_event(np.array([5.0, 4.5, 4.0, 3.5, 3.0, 0.5]))) == [
        "bookmark",
        "bookmark",
        "like",
        "like",
        "view",
        "view",
    ]


@pytest.mark.parametrize(
    "content, where",
    [
        ("userId,movieId,rating\n1,2,3\n", ":1: expected header"),
        ("userId,movieId,rating,timestamp\n1,2,4.0,100\n1,2,x,100\n", ":3: not a number"),
        ("userId,movieId,rating,timestamp\n1,2,4.0,100\n1,2,4.0\n", ":3: expected 4 fields"),
        ("userId,movieId,rating,timestamp\n1,2,9.0,100\n", ":2: rating 9.0 outside"),
        ("userId,movieId,rating,timestamp\n", "no ratings"),
    ],
)
def test_malformed_movielens_names_the_line(tmp_path, content, where):
    path = tmp_path / "ratings.csv"
    path.write_text(content)
    with pytest.raises(InputDataError) as e:
        read_movielens(str(path))
    assert str(path) in str(e.value) and where in str(e.value)


def test_reads_the_movielens_sample(movielens_dir):
    events = read_movielens(str(movielens_dir / "ratings.csv"))
    assert events.num_rows == 100836
    assert set(events.column("event_type").to_pylist()) == {"view", "like", "bookmark"}


@pytest.mark.parametrize(
    "kwargs, option",
    [({"items": 10}, "--items 10"), ({"users": 0}, "--users 0"), ({"days": 0}, "--days 0")],
)
def test_impossible_generator_sizes_name_the_option(kwargs, option):
    from batch.data import SyntheticSpec
    from batch.errors import ConfigError

    with pytest.raises(ConfigError, match=option):
        SyntheticSpec(**kwargs)
