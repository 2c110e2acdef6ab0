"""Input data for the embedded warehouse: seeded synthetic traffic, and MovieLens imports.

Both write the tables a pipeline's ``source`` names: events (user_id STRING, item_id STRING, event_type STRING,
ts TIMESTAMP) and items (item_id STRING, available_from TIMESTAMP, available_until TIMESTAMP, NULL = on sale; the
synthetic catalogue also has creator_id STRING, the creator each item belongs to).

Synthetic traffic (``generate``) looks like a content site's: item popularity and user activity follow power
laws; users and items belong to latent taste clusters (so a model has signal to find: most of a user's events
are in their clusters); views are common, likes rarer, bookmarks rarest, and more likely on items to the user's
taste; items appear during the period and some leave sale; a small share of rows is dirty (null ids, unknown
event types, duplicates) the way real logs are, so the aggregate step's drop counts mean something. Items belong
to creators (``creator_id``, as on a creator-support platform): each creator works mostly in one taste cluster and
the number of items per creator follows a power law. Creators are drawn from their own seeded stream after every
other draw, so the events and item ids of a spec are the same as before creators existed.

MovieLens (``import_movielens``): each rating becomes one event at its timestamp, typed by the rating:
``rating >= 4.5 -> bookmark``, ``3.5 <= rating < 4.5 -> like``, ``rating < 3.5 -> view`` (a rating at all means
the user watched it). Ids are kept as given (as strings). Importing appends; movies get catalogue rows
(available from their first rating) the first time they are seen.

The importer refuses rather than guesses: the file is read as a stream (plain or gzip, detected by its magic
bytes) one line at a time with memory bounded by MAX_LINE_BYTES whatever the line length, and the first bad line
stops the import with ``file:line: what is wrong`` (exit 65) before anything is written. Bad means: not UTF-8, a
bare carriage return (CRLF line ends are fine), a line over MAX_LINE_BYTES, the wrong number of fields, not a
number, a rating outside 0..5, or an implausible timestamp: negative (before 1970), past 2999-12-31 (which
catches milliseconds, named as such, and values beyond int64). A UTF-8 byte order mark is skipped; a UTF-16 one
is refused. Nothing is dropped silently: there is no "count and drop" rule for ratings.
"""

from __future__ import annotations

import csv
import gzip
import logging
import os
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from batch.errors import ConfigError, InputDataError

log = logging.getLogger(__name__)

EVENT_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("event_type", pa.string()),
        ("ts", pa.timestamp("us", tz="UTC")),
    ]
)
ITEM_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("available_from", pa.timestamp("us", tz="UTC")),
        ("available_until", pa.timestamp("us", tz="UTC")),
    ]
)
# The synthetic catalogue: the items relation plus the creator of each item (config/pipelines/creators.yaml).
CATALOGUE_SCHEMA = ITEM_SCHEMA.append(pa.field("creator_id", pa.string()))


@dataclass(frozen=True)
class SyntheticSpec:
    users: int = 5000
    items: int = 2000
    days: int = 35
    end_date: date = date(2026, 11, 21)
    seed: int = 7
    events_per_user: float = 40.0  # mean; activity is heavy-tailed around it
    clusters: int = 24
    taste_share: float = 0.8  # share of a user's events inside their taste clusters
    dirty_share: float = 0.002
    items_per_creator: float = 8.0  # mean; the number of items per creator follows a power law
    creator_focus: float = 0.9  # share of an item's creator drawn from the creators of the item's cluster

    def __post_init__(self) -> None:
        """Sizes the generator can honour; errors name the `reco data generate` option."""
        if self.users < 1:
            raise ConfigError(f"--users {self.users}: needs at least 1 user")
        if self.items < self.clusters:
            raise ConfigError(
                f"--items {self.items}: needs at least {self.clusters} items (one per taste cluster)"
            )
        if self.days < 1:
            raise ConfigError(f"--days {self.days}: needs at least 1 day")
        if not self.events_per_user > 0:
            raise ConfigError(f"--events-per-user {self.events_per_user}: must be > 0")


def generate(spec: SyntheticSpec) -> tuple[pa.Table, pa.Table]:
    """(events, items) for ``spec``; the same spec always gives the same tables."""
    rng = np.random.default_rng(spec.seed)
    n_u, n_i, k = spec.users, spec.items, spec.clusters
    end = datetime.combine(spec.end_date + timedelta(days=1), time.min, tzinfo=UTC)
    start = end - timedelta(days=spec.days)
    period_us = int((end - start).total_seconds() * 1e6)

    # Items: a cluster each, Zipf popularity, an arrival time (most existed before the period) and for some a
    # departure time.
    item_cluster = rng.integers(0, k, n_i)
    item_pop = 1.0 / np.arange(1, n_i + 1) ** 1.05
    rng.shuffle(item_pop)
    arrive = np.where(
        rng.random(n_i) < 0.9, -rng.integers(1, 365 * 86400, n_i) * 1_000_000, rng.integers(0, period_us, n_i)
    )
    leaves = rng.random(n_i) < 0.12
    leave = np.where(
        leaves, arrive + rng.integers(3 * 86400, 120 * 86400, n_i) * 1_000_000, np.iinfo(np.int64).max
    )
    leave = np.where(leave <= arrive, arrive + 86400 * 1_000_000, leave)

    # Users: one or two taste clusters, heavy-tailed activity.
    user_c1 = rng.integers(0, k, n_u)
    user_c2 = np.where(rng.random(n_u) < 0.4, rng.integers(0, k, n_u), user_c1)
    activity = rng.pareto(1.6, n_u) + 0.3
    activity = activity / activity.mean() * spec.events_per_user
    n_events_u = np.maximum(1, rng.poisson(activity))
    users = np.repeat(np.arange(n_u), n_events_u)
    n_ev = len(users)

    # Items per event: inside a taste cluster with probability taste_share, else from global popularity.
    order = np.argsort(item_cluster, kind="stable")
    bounds = np.searchsorted(item_cluster[order], np.arange(k + 1))
    cum_within = np.zeros(n_i)
    for c in range(k):
        sl = order[bounds[c] : bounds[c + 1]]
        w = item_pop[sl]
        cum_within[bounds[c] : bounds[c + 1]] = np.cumsum(w) / w.sum() if len(w) else 0
    global_cum = np.cumsum(item_pop) / item_pop.sum()
    in_taste = rng.random(n_ev) < spec.taste_share
    cluster = np.where(rng.random(n_ev) < 0.65, user_c1[users], user_c2[users])
    u = rng.random(n_ev)
    lo, hi = bounds[cluster], bounds[cluster + 1]
    # Search inside each cluster's slice of the cumulative weights at once: shifting cluster c's cumulative
    # weights by c makes the whole array increasing, so one searchsorted serves every cluster.
    offsets = cum_within + np.repeat(np.arange(k), np.diff(bounds))  # strictly increasing across clusters
    pos = np.searchsorted(offsets, cluster + u)
    pos = np.clip(pos, lo, np.maximum(hi - 1, lo))
    taste_items = order[pos]
    global_items = np.minimum(np.searchsorted(global_cum, rng.random(n_ev)), n_i - 1)
    items = np.where(in_taste & (hi > lo), taste_items, global_items)

    # Timestamps inside the period and the item's time on sale.
    lo_t = np.maximum(arrive[items], 0)
    hi_t = np.minimum(leave[items], period_us)
    ok = hi_t > lo_t
    users, items, lo_t, hi_t, in_taste = users[ok], items[ok], lo_t[ok], hi_t[ok], in_taste[ok]
    offs = lo_t + (rng.random(len(items)) * (hi_t - lo_t)).astype(np.int64)
    like_p = np.where(in_taste, 0.2, 0.06)
    r = rng.random(len(items))
    etype = np.where(r < like_p * 0.3, "bookmark", np.where(r < like_p, "like", "view"))

    user_names = pa.array([f"u{i:07d}" for i in range(n_u)])
    item_names = pa.array([f"i{i:06d}" for i in range(n_i)])
    ts = pa.array(offs + int(start.timestamp() * 1e6), pa.timestamp("us", tz="UTC"))
    events = pa.table(
        {
            "user_id": user_names.take(pa.array(users)),
            "item_id": item_names.take(pa.array(items)),
            "event_type": pa.array(etype),
            "ts": ts,
        },
        schema=EVENT_SCHEMA,
    )
    events = _add_dirt(events, rng, spec.dirty_share)

    start_us = int(start.timestamp() * 1e6)
    catalogue = pa.table(
        {
            "item_id": item_names,
            "available_from": pa.array(arrive + start_us, pa.timestamp("us", tz="UTC")),
            "available_until": pa.array(
                np.where(leaves, leave + start_us, 0), pa.timestamp("us", tz="UTC"), mask=~leaves
            ),
        },
        schema=ITEM_SCHEMA,
    )
    creators = assign_creators(item_cluster, spec)
    catalogue = catalogue.append_column(
        CATALOGUE_SCHEMA.field("creator_id"), pa.array([f"c{c:05d}" for c in creators], pa.string())
    )
    return events, catalogue


def assign_creators(item_cluster: np.ndarray, spec: SyntheticSpec) -> np.ndarray:
    """A creator index per item. Each creator has a home taste cluster; an item's creator comes from its cluster's
    creators with probability ``creator_focus`` (else from all creators), weighted by a Zipf law over creators, so
    a few creators make many items and most make a few, and following a creator says something about taste.

    Its own generator (seeded from the spec's seed and a fixed tag): adding creators changes no other draw.
    """
    rng = np.random.default_rng([spec.seed, 0xC4EA7025])
    n_i, k = len(item_cluster), spec.clusters
    n_c = max(1, round(n_i / spec.items_per_creator))
    home = rng.permutation(n_c) % k  # home cluster per creator: every cluster has creators when n_c >= k
    weight = 1.0 / np.arange(1, n_c + 1) ** 1.1
    rng.shuffle(weight)
    out = np.empty(n_i, dtype=np.int64)
    focused = rng.random(n_i) < spec.creator_focus
    global_p = weight / weight.sum()
    for c in range(k):
        members = np.flatnonzero(home == c)
        mine = np.flatnonzero(item_cluster == c)
        if len(members) == 0:  # fewer creators than clusters: this cluster's items come from anyone
            focused[mine] = False
            continue
        pick = mine[focused[mine]]
        p = weight[members] / weight[members].sum()
        out[pick] = members[rng.choice(len(members), size=len(pick), p=p)]
    rest = np.flatnonzero(~focused)
    out[rest] = rng.choice(n_c, size=len(rest), p=global_p)
    return out


def _add_dirt(events: pa.Table, rng: np.random.Generator, share: float) -> pa.Table:
    n = int(events.num_rows * share)
    if n == 0:
        return events
    df = events.slice(0, n * 4).to_pandas()
    null_ids = df.iloc[:n].assign(user_id=None)
    unknown = df.iloc[n : 2 * n].assign(event_type="share")
    dupes = df.iloc[2 * n : 3 * n]
    dirty = pa.Table.from_pandas(
        pd.concat([null_ids, unknown, dupes]), schema=EVENT_SCHEMA, preserve_index=False
    )
    return pa.concat_tables([events, dirty])


# ---------------------------------------------------------------------------------------------------------------
# MovieLens

MOVIELENS_HEADER = ["userId", "movieId", "rating", "timestamp"]


def rating_to_event(rating: np.ndarray) -> np.ndarray:
    return np.where(rating >= 4.5, "bookmark", np.where(rating >= 3.5, "like", "view"))


MAX_LINE_BYTES = 64 * 1024  # a ratings line is ~30 bytes; anything this long is not one
MAX_TIMESTAMP = 32503680000 - 1  # 2999-12-31T23:59:59Z: later is a typo, or milliseconds
BATCH_ROWS = 200_000
_GZIP_MAGIC = b"\x1f\x8b"
_UTF8_BOM = b"\xef\xbb\xbf"


def _open_binary(path: str):
    try:
        with open(path, "rb") as probe:
            magic = probe.read(2)
        return gzip.open(path, "rb") if magic == _GZIP_MAGIC else open(path, "rb")
    except OSError as e:
        raise InputDataError(f"{path}: cannot read: {e}") from e


def _lines(path: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line, decoded and checked; memory bounded by MAX_LINE_BYTES."""
    with _open_binary(path) as f:
        line_no = 0
        while True:
            line_no += 1
            try:
                raw = f.readline(MAX_LINE_BYTES + 1)
            except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
                raise InputDataError(
                    f"{path}:{line_no}: cannot read (damaged or truncated gzip?): {e}"
                ) from e
            if not raw:
                return
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                if b"\r" in raw:
                    raise InputDataError(_bare_cr(path, line_no))
                raise InputDataError(
                    f"{path}:{line_no}: line longer than {MAX_LINE_BYTES} bytes (a ratings line is about 30): "
                    "not a MovieLens ratings file, or a field that runs on"
                )
            raw = raw.removesuffix(b"\n").removesuffix(b"\r")
            if b"\r" in raw:
                raise InputDataError(_bare_cr(path, line_no))
            if line_no == 1:
                if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
                    raise InputDataError(
                        f"{path}:1: the file is UTF-16 (byte order mark); convert it to UTF-8, e.g. "
                        f"iconv -f UTF-16 -t UTF-8"
                    )
                raw = raw.removeprefix(_UTF8_BOM)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputDataError(
                    f"{path}:{line_no}: not UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})"
                ) from None
            yield line_no, text


def _bare_cr(path: str, line_no: int) -> str:
    return (
        f"{path}:{line_no}: bare carriage return (CR without LF): old Mac line ends or a stray CR; "
        "convert with tr '\\r' '\\n' or dos2unix -c mac"
    )


def _timestamp(path: str, line_no: int, stamp: int) -> int:
    if stamp < 0:
        raise InputDataError(
            f"{path}:{line_no}: timestamp {stamp} is negative (before 1970); expected Unix seconds"
        )
    if stamp > MAX_TIMESTAMP:
        if stamp // 1000 <= MAX_TIMESTAMP:
            raise InputDataError(
                f"{path}:{line_no}: timestamp {stamp} looks like milliseconds; expected Unix seconds "
                f"(divide by 1000)"
            )
        raise InputDataError(
            f"{path}:{line_no}: timestamp {stamp} is after 2999-12-31; expected Unix seconds"
        )
    return stamp


def iter_movielens(path: str, batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """Record batches (EVENT_SCHEMA) of a MovieLens ``ratings.csv`` (or .csv.gz), streamed; InputDataError
    names the file and line of the first bad line."""
    lines = _lines(path)
    first = next(lines, None)
    header = next(csv.reader([first[1]])) if first else []
    if header != MOVIELENS_HEADER:
        raise InputDataError(
            f"{path}:1: expected header {','.join(MOVIELENS_HEADER)}, got {','.join(header)!r}"
        )
    users, movies, ratings, stamps = [], [], [], []
    total = 0

    def batch() -> pa.RecordBatch:
        return pa.RecordBatch.from_arrays(
            [
                pa.array(users, pa.string()),
                pa.array(movies, pa.string()),
                pa.array(rating_to_event(np.asarray(ratings, dtype=np.float64)), pa.string()),
                pa.array(np.asarray(stamps, dtype=np.int64) * 1_000_000, pa.timestamp("us", tz="UTC")),
            ],
            schema=EVENT_SCHEMA,
        )

    for line_no, text in lines:
        if not text.strip():
            continue
        row = next(csv.reader([text]))
        if len(row) != 4:
            raise InputDataError(
                f"{path}:{line_no}: expected 4 fields (userId,movieId,rating,timestamp), got {len(row)}"
            )
        try:
            uid, mid, rating, stamp = int(row[0]), int(row[1]), float(row[2]), int(row[3])
        except ValueError:
            raise InputDataError(f"{path}:{line_no}: not a number in {','.join(row)!r}") from None
        if not 0 <= rating <= 5:
            raise InputDataError(f"{path}:{line_no}: rating {rating} outside 0..5")
        users.append(str(uid))
        movies.append(str(mid))
        ratings.append(rating)
        stamps.append(_timestamp(path, line_no, stamp))
        if len(users) >= batch_rows:
            total += len(users)
            yield batch()
            users, movies, ratings, stamps = [], [], [], []
    if users:
        total += len(users)
        yield batch()
    if total == 0:
        raise InputDataError(f"{path}: no ratings after the header")


def read_movielens(path: str) -> pa.Table:
    """Parse a MovieLens ``ratings.csv`` into one table; a malformed line is an error naming file and line."""
    return pa.Table.from_batches(list(iter_movielens(path)), schema=EVENT_SCHEMA)


def import_movielens(wh, path: str, events_table: str, items_table: str | None) -> dict:
    """Append a ratings file to the warehouse with bounded memory: parsed batch by batch into a temporary
    Parquet file (so a bad line stops the import before anything is written), then loaded in one transaction."""
    first_seen: dict[str, int] = {}  # movie -> first rating (us): as many entries as movies, not ratings
    with tempfile.TemporaryDirectory(prefix="reco-import-") as tmp:
        staged = os.path.join(tmp, "events.parquet")
        with pq.ParquetWriter(staged, EVENT_SCHEMA, compression="zstd") as out:
            for b in iter_movielens(path):
                out.write_batch(b)
                df = pd.DataFrame(
                    {
                        "item_id": b.column(1).to_numpy(zero_copy_only=False),
                        "ts": b.column(3).cast(pa.int64()),
                    }
                )
                for item, ts in df.groupby("item_id")["ts"].min().items():
                    if item not in first_seen or ts < first_seen[item]:
                        first_seen[item] = int(ts)
        n_events = wh.load_parquet(events_table, staged, mode="append")
    n_items = 0
    if items_table:
        names = list(first_seen)
        items = pa.table(
            {
                "item_id": pa.array(names, pa.string()),
                "available_from": pa.array([first_seen[n] for n in names], pa.timestamp("us", tz="UTC")),
                "available_until": pa.nulls(len(names), pa.timestamp("us", tz="UTC")),
            },
            schema=ITEM_SCHEMA,
        )
        n_items = _write_items(wh, items_table, items, append=True)
    return {"events": n_events, "items": n_items}


def catalogue_from_events(events: pa.Table) -> pa.Table:
    df = events.select(["item_id", "ts"]).to_pandas()
    first = df.groupby("item_id")["ts"].min().reset_index()
    return pa.table(
        {
            "item_id": pa.array(first["item_id"].astype(str), pa.string()),
            "available_from": pa.array(first["ts"], pa.timestamp("us", tz="UTC")),
            "available_until": pa.nulls(len(first), pa.timestamp("us", tz="UTC")),
        },
        schema=ITEM_SCHEMA,
    )


def write_source(
    wh, events_table: str, items_table: str | None, events: pa.Table, items: pa.Table | None, *, append: bool
) -> dict:
    """Write events (and new catalogue rows) to the warehouse; returns counts."""
    n_events = wh.write_table(events_table, events, mode="append" if append else "replace")
    n_items = 0
    if items_table and items is not None:
        n_items = _write_items(wh, items_table, items, append=append)
    return {"events": n_events, "items": n_items}


def _write_items(wh, items_table: str, items: pa.Table, *, append: bool) -> int:
    """Catalogue rows: appended for items not yet known (append), or the whole catalogue replaced."""
    if append and wh.table_exists(items_table):
        known = set(
            wh.query("SELECT item_id FROM {t}", tables={"t": items_table}).column("item_id").to_pylist()
        )
        items = items.filter(pa.array([i not in known for i in items.column("item_id").to_pylist()]))
        return wh.write_table(items_table, items, mode="append") if items.num_rows else 0
    return wh.write_table(items_table, items, mode="replace")
