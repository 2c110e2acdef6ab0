"""candidates: the model -> top-N per user (candidate sources "personal", with the "popular" fallback).

Scored exactly, or through the ANN index (dataset ``index``) when ``candidates.method`` is ``ann``, or ``auto`` and
the index step chose ann: the same output either way, the index only decides which items get scored.

Users are split into shards by a stable hash of their id (StepContext.mine), so that N shard processes
(an Indexed Job's pods) together cover every user exactly once, whatever machine runs them. Users stream
through in blocks of ``candidates.batch_size``: the scoring buffer is batch_size x n_items, whatever the number
of users. Already-seen and unavailable items are never recommended. Users without history (or below the
pipeline's min_user_events) get the popularity fallback, and so does the tail of a list the model could not
fill; such rows say ``source = 'popular'``.

On an incremental day (docs/incremental.md) users with new events since the parent run, users new to the
model and users whose parent list holds a personal item no longer available are scored like on any day. The
quiet others (``incremental.quiet_users``) are refreshed: today's model ranks their parent publish's list
together with the day's hot items (every item new to the model and the ``refresh_items`` with most events in the
holdout days), so a quiet user costs ``n + refresh_items`` scores instead of the catalogue; or they keep the
parent's list as it was (``carry``: unavailable fallback rows removed, the tail refilled), or are rescored
(``rescore``). The shard counts ``users_recomputed``, ``users_refreshed`` and ``users_carried``.

Output: dataset ``candidates``, one partition per shard: ``part.parquet`` with user_id, item_id, rank, score,
source; the export step writes them into ``recommendations.parquet``.
"""

from __future__ import annotations

import logging
import posixpath
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import scipy.sparse as sp

import models
from batch import datasets
from batch.context import StepContext
from batch.datasets import CANDIDATES, INDEX, INTERACTIONS, MODEL
from batch.errors import ArtifactError
from batch.graph import Export, step
from batch.progress import progress
from models.ann import AnnIndex
from models.topk import topk_among

log = logging.getLogger(__name__)

CANDIDATE_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("rank", pa.int32()),
        ("score", pa.float32()),
        ("source", pa.string()),
    ]
)
SOURCE_NAMES = pa.array(["personal", "popular"], pa.string())  # indexed by "came from the fallback"


@dataclass
class UserBlock:
    user_idx: np.ndarray  # int32, ascending
    user_ids: np.ndarray  # str
    seen: sp.csr_matrix  # rows = user_idx, columns = items


def iter_user_blocks(
    users: pq.ParquetFile, interactions: pq.ParquetFile, n_items: int, batch_size: int
) -> Iterator[UserBlock]:
    """Walk users and their interactions (both sorted by user_idx) together, one bounded block at a time."""
    inter_batches = interactions.iter_batches(
        batch_size=max(batch_size * 8, 65536), columns=["user_idx", "item_idx"]
    )
    pending_u = np.empty(0, np.int32)
    pending_i = np.empty(0, np.int32)
    exhausted = False
    for ub in users.iter_batches(batch_size=batch_size, columns=["user_idx", "user_id"]):
        uidx = ub.column("user_idx").to_numpy().astype(np.int32)
        hi = int(uidx[-1])
        while not exhausted and (len(pending_u) == 0 or pending_u[-1] <= hi):
            try:
                b = next(inter_batches)
            except StopIteration:
                exhausted = True
                break
            pending_u = np.concatenate([pending_u, b.column("user_idx").to_numpy().astype(np.int32)])
            pending_i = np.concatenate([pending_i, b.column("item_idx").to_numpy().astype(np.int32)])
        cut = np.searchsorted(pending_u, hi, side="right")
        rows_u, rows_i = pending_u[:cut], pending_i[:cut]
        pending_u, pending_i = pending_u[cut:], pending_i[cut:]
        local = np.searchsorted(uidx, rows_u)
        if len(rows_u) and not np.array_equal(uidx[np.minimum(local, len(uidx) - 1)], rows_u):
            raise ValueError("interactions reference users missing from users.parquet")
        seen = sp.csr_matrix((np.ones(len(rows_u), np.float32), (local, rows_i)), shape=(len(uidx), n_items))
        yield UserBlock(uidx, ub.column("user_id").to_numpy(zero_copy_only=False), seen)


def popular_order(items: pd.DataFrame) -> np.ndarray:
    """Available items, most popular first (ties by item index, so it is deterministic)."""
    avail = items[items["available"]]
    order = np.lexsort((avail["item_idx"].to_numpy(), -avail["weight"].to_numpy()))
    return avail["item_idx"].to_numpy()[order].astype(np.int32)


def fill_with_popular(
    ids: np.ndarray, scores: np.ndarray, seen: sp.csr_matrix, popular: np.ndarray, popular_scores: np.ndarray
) -> np.ndarray:
    """Fill -1 slots with popular items the user has not seen and was not recommended. Returns a source mask
    (True where the slot came from the fallback). Modifies ids and scores in place."""
    from_popular = np.zeros(ids.shape, dtype=bool)
    n = ids.shape[1]
    for row in np.flatnonzero(ids[:, -1] < 0):
        start = int((ids[row] >= 0).sum())  # models fill a prefix; -1 pads only the tail
        exclude = np.concatenate([ids[row, :start], seen.indices[seen.indptr[row] : seen.indptr[row + 1]]])
        head = popular[: n + len(exclude)]  # enough popular items to fill the gap whatever is excluded
        keep = ~np.isin(head, exclude)
        extra = head[keep][: n - start]
        ids[row, start : start + len(extra)] = extra
        scores[row, start : start + len(extra)] = popular_scores[: n + len(exclude)][keep][: n - start]
        from_popular[row, start : start + len(extra)] = True
    return from_popular


def recommend_block(
    model: models.Recommender,
    block: UserBlock,
    n: int,
    unavailable: np.ndarray,
    popular: np.ndarray,
    popular_scores: np.ndarray,
    ann: AnnIndex | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, scores, from_popular) for one block of users: model where there is history, fallback elsewhere.

    With ``ann`` the model's user factors query the index (same scores: inner products of the same factors),
    seen items excluded, unavailable ones filtered; without it the model scores every item exactly."""
    ids = np.full((len(block.user_idx), n), -1, np.int32)
    scores = np.full((len(block.user_idx), n), -np.inf, np.float32)
    has_history = np.diff(block.seen.indptr) > 0
    rows = np.flatnonzero(has_history)
    if len(rows) and ann is not None:
        got_ids, got_scores = ann.search(
            model.user_factors[block.user_idx[rows]],
            n,
            exclude=block.seen[rows],
            filter_items=unavailable,
        )
        ids[rows], scores[rows] = got_ids, got_scores
    elif len(rows):
        got_ids, got_scores = model.recommend(
            block.user_idx[rows],
            block.seen[rows],
            n,
            filter_already_liked_items=True,
            filter_items=unavailable,
        )
        ids[rows], scores[rows] = got_ids, got_scores
    from_popular = fill_with_popular(ids, scores, block.seen, popular, popular_scores)
    return ids, scores, from_popular


@dataclass
class Carried:
    """The parent publish's lists of this shard's users who need no recomputation (incremental days), in one
    CSR-like layout: user ``users[k]`` keeps rows ``offsets[k]:offsets[k + 1]`` of the row arrays, rank order."""

    users: pd.Index  # carried user ids, unique
    offsets: np.ndarray  # int64, len(users) + 1
    item_idx: np.ndarray  # int32
    score: np.ndarray  # float32
    from_popular: np.ndarray  # bool
    reason: str  # why lists are carried, or why none are

    @classmethod
    def none(cls, reason: str) -> Carried:
        return cls(
            pd.Index([], dtype=object),
            np.zeros(1, np.int64),
            np.empty(0, np.int32),
            np.empty(0, np.float32),
            np.empty(0, bool),
            reason,
        )

    def positions(self, user_ids: np.ndarray) -> np.ndarray:
        """Each user's position in ``users``, -1 where the user is recomputed."""
        if len(self.users) == 0:
            return np.full(len(user_ids), -1, np.int64)
        return self.users.get_indexer(user_ids)

    def rows(self, positions: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(output row, slot, source row) of the first ``n`` kept rows of each user at ``positions``."""
        starts = self.offsets[positions]
        lengths = np.minimum(self.offsets[positions + 1] - starts, n)
        out_row = np.repeat(np.arange(len(positions)), lengths)
        slot = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        return out_row, slot, np.repeat(starts, lengths) + slot


def parent_lists(
    ctx: StepContext, model_art: datasets.Model, inter: datasets.Interactions, items: pd.DataFrame
) -> Carried:
    """Carried lists of an incremental day, or a reason why every user of the shard is recomputed.

    A user keeps the parent publish's list unless they have events the parent run did not see (a day of theirs
    was computed after it: ``user_changes.parquet``), are new to it, or their parent list holds a personal item
    that is no longer available (or no longer in the model). Kept lists lose unavailable rows (the popularity
    fallback's) and are refilled from the fallback later."""
    chain = model_art.metadata.get("incremental") or {}
    if chain.get("kind") != "incremental" or not chain.get("parent"):
        return Carried.none(f"every user recomputed: a {chain.get('kind', 'full')} fit")
    parent = chain["parent"]
    record = ctx.store.previous_publish(ctx.name, ctx.session_date)
    model_ref = ctx.store.reference_model(ctx.name, ctx.session_date)
    if (
        record is None
        or model_ref is None
        or record.get("model_version") != parent["model_version"]
        or model_ref.get("model_version") != parent["model_version"]
    ):
        return Carried.none("every user recomputed: the previous publish is not the parent model's")
    path = (record.get("files") or {}).get("recommendations.parquet")
    if "user_changes.parquet" not in inter.src.marker.get("files", {}) or not path:
        return Carried.none("every user recomputed: no record of which users changed")
    parent_run = posixpath.basename(model_ref["run_dir"].rstrip("/")).removeprefix("run=")
    # ids stay dictionary-encoded, so per-id work (the shard hash, id lookups) runs once per distinct user or
    # item instead of once per row
    with _parent_rows(ctx, record, path) as f:
        prev = pq.read_table(
            f, columns=["user_id", "item_id", "rank", "score", "source"], read_dictionary=DICT_COLUMNS
        ).unify_dictionaries()
    user_code, user_dict = _codes(prev.column("user_id"))
    item_code, item_dict = _codes(prev.column("item_id"))
    source_code, source_dict = _codes(prev.column("source"))
    changes = inter.src.read_parquet("user_changes.parquet").to_pandas()
    changed = changes.loc[changes["changed_run"] > parent_run, "user_id"].to_numpy()
    mine_u = ctx.mine(user_dict) if len(user_dict) else np.zeros(0, bool)
    item_of = pd.Index(items["item_id"].to_numpy()).get_indexer(item_dict)
    on_sale = np.zeros(len(item_dict), bool)
    on_sale[item_of >= 0] = items["available"].to_numpy()[item_of[item_of >= 0]]
    personal = np.asarray(source_dict == "personal")
    ok = on_sale[item_code]
    gone_u = np.zeros(len(user_dict), bool)
    gone_u[user_code[~ok & personal[source_code]]] = True
    # users whose every row went (all unavailable fallback rows) are carried as empty lists, refilled later
    is_changed = pc.is_in(pa.array(user_dict, pa.string()), value_set=pa.array(changed, pa.string()))
    keep_u = mine_u & ~gone_u & ~is_changed.to_numpy(zero_copy_only=False)
    keep_u[np.setdiff1d(np.arange(len(user_dict)), user_code)] = False  # dictionary entries without rows
    position = np.cumsum(keep_u) - 1  # dictionary code -> position among the carried users
    rows = np.flatnonzero(keep_u[user_code] & ok)
    code = position[user_code[rows]]
    rank = prev.column("rank").to_numpy()[rows]
    # the export lists each user's rows together in rank order: sort only when that does not hold
    in_order = (code[1:] > code[:-1]) | ((code[1:] == code[:-1]) & (rank[1:] > rank[:-1]))
    if not in_order.all():
        order = np.lexsort((rank, code))
        rows, code = rows[order], code[order]
    users = pd.Index(user_dict[keep_u], dtype=object)
    offsets = np.zeros(len(users) + 1, np.int64)
    np.cumsum(np.bincount(code, minlength=len(users)), out=offsets[1:])
    return Carried(
        users,
        offsets,
        item_of[item_code[rows]].astype(np.int32),
        prev.column("score").to_numpy().astype(np.float32)[rows],
        ~personal[source_code[rows]],
        f"lists carried from the publish of {record['dt']} ({parent['model_version']})",
    )


DICT_COLUMNS = ["user_id", "item_id", "source"]


def _parent_rows(ctx: StepContext, record: dict, publish_path: str):
    """The parent's lists as a file: this shard's candidates partition of the parent date when it is the one
    the publish exported (same model, same sharding: half the rows of the publish at 2 shards), else the
    publish's recommendations.parquet (every shard's users)."""
    try:
        shard = ctx.store.committed(
            ctx.name, CANDIDATES, date.fromisoformat(record["dt"]), step="candidates", shard=ctx.shard
        )
        if shard.metadata.get("model_version") == record.get("model_version"):
            return shard.open("part.parquet")
    except ArtifactError:
        pass
    return ctx.store.fs.open(ctx.store.resolve(publish_path), "rb")


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(int64 codes per row, the dictionary as an object array) of a dictionary-encoded column whose chunks
    share one dictionary (``Table.unify_dictionaries``)."""
    chunks = column.chunks
    if not chunks:
        return np.empty(0, np.int64), np.empty(0, object)
    codes = np.concatenate([c.indices.to_numpy(zero_copy_only=False).astype(np.int64) for c in chunks])
    return codes, chunks[0].dictionary.to_numpy(zero_copy_only=False).astype(object)


def carried_block(
    seen: sp.csr_matrix,
    positions: np.ndarray,
    carried: Carried,
    n: int,
    popular: np.ndarray,
    popular_scores: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, scores, from_popular) of carried users (``positions`` in ``carried.users``, ``seen`` their rows):
    the parent's order, gaps closed, tail refilled."""
    ids = np.full((len(positions), n), -1, np.int32)
    scores = np.full((len(positions), n), -np.inf, np.float32)
    kept_pop = np.zeros((len(positions), n), dtype=bool)
    out_row, slot, src = carried.rows(positions, n)
    ids[out_row, slot] = carried.item_idx[src]
    scores[out_row, slot] = carried.score[src]
    kept_pop[out_row, slot] = carried.from_popular[src]
    from_popular = fill_with_popular(ids, scores, seen, popular, popular_scores)
    return ids, scores, from_popular | kept_pop


def hot_items(inter: datasets.Interactions, n_items: int, count: int) -> np.ndarray:
    """The day's hottest items for refreshed lists: every item new to the model (all its events in the holdout
    days, the days added since the parent) and the ``count`` items with the most events in those days."""
    t = inter.src.read_parquet("interactions.parquet", columns=["item_idx", "weight_train", "holdout_events"])
    item_idx = t["item_idx"].to_numpy()
    recent = np.bincount(item_idx, weights=t["holdout_events"].to_numpy(), minlength=n_items)
    before = np.bincount(item_idx, weights=t["weight_train"].to_numpy(), minlength=n_items)
    new = np.flatnonzero((recent > 0) & (before == 0))
    # most events first, ties by item index (deterministic)
    trending = np.lexsort((np.arange(n_items), -recent))[: min(count, int((recent > 0).sum()))]
    return np.union1d(new, trending).astype(np.int32)


def refreshed_block(
    model: models.Recommender,
    block: UserBlock,
    positions: np.ndarray,
    carried: Carried,
    hot: np.ndarray,
    n: int,
    unavailable: np.ndarray,
    popular: np.ndarray,
    popular_scores: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, scores, from_popular) of quiet users on a refresh day: today's model ranks each user's parent list
    together with the day's hot items (seen and unavailable ones excluded); the tail is refilled."""
    ids = np.full((len(positions), n), -1, np.int32)
    scores = np.full((len(positions), n), -np.inf, np.float32)
    rows = np.flatnonzero(np.diff(block.seen.indptr) > 0)
    if len(rows):
        own = np.full((len(rows), n), -1, np.int64)
        out_row, slot, src = carried.rows(positions[rows], n)
        own[out_row, slot] = carried.item_idx[src]
        ids[rows], scores[rows] = topk_among(
            model.user_factors[block.user_idx[rows]],
            model.item_factors,
            n,
            own,
            hot,
            exclude_csr_rows=block.seen[rows],
            filter_items=unavailable,
        )
    from_popular = fill_with_popular(ids, scores, block.seen, popular, popular_scores)
    return ids, scores, from_popular


def quiet_lists(
    ctx: StepContext, model_art: datasets.Model, model: models.Recommender, inter, items: pd.DataFrame
) -> Carried:
    """The parent lists of quiet users, or why every user is rescored (incremental.quiet_users)."""
    cfg = ctx.pipeline
    mode = cfg.incremental.quiet_users
    if not cfg.incremental.enabled or mode == "rescore":
        return Carried.none(f"every user recomputed: incremental.quiet_users is {mode}")
    if mode == "refresh":
        if model.user_factors is None:
            return Carried.none(
                f"every user recomputed: a {model.model_type} model has no factors to refresh with"
            )
        parent = (model_art.metadata.get("incremental") or {}).get("parent") or {}
        holdout_start = ctx.session_date - timedelta(days=cfg.evaluation.holdout_days)
        if parent.get("dt") and date.fromisoformat(parent["dt"]) < holdout_start:
            # the hot items come from the holdout days: older parents missed days they do not cover
            return Carried.none(
                f"every user recomputed: the parent ({parent['dt']}) is older than the holdout days"
            )
    return parent_lists(ctx, model_art, inter, items)


@step(
    name="candidates",
    # the index is read only when candidates.method is not exact (the index step is disabled otherwise)
    reads=(MODEL, INTERACTIONS, INDEX),
    writes=CANDIDATES,
    sharded=True,
    resources="compute",
    source="personal",
    exports=(Export("recommendations.parquet", ("user_id", "item_id", "rank", "score", "source")),),
    description="model -> top-N per user (sharded)",
)
def run(ctx: StepContext) -> dict:
    """User candidates for this shard."""
    cfg = ctx.pipeline
    started = time.perf_counter()
    model_art = datasets.model(ctx)
    model = model_art.load()
    inter = datasets.interactions(ctx)
    items = model_art.items()
    unavailable = items.loc[~items["available"], "item_idx"].to_numpy(np.int32)
    popular = popular_order(items)
    popular_scores = items.set_index("item_idx").loc[popular, "weight"].to_numpy(np.float32)
    n = cfg.candidates.n
    model_version = model_art.version
    method, ann = "exact", None
    if cfg.candidates.method != "exact":
        index_art = datasets.index(ctx)
        index_art.check_made_from(ctx, model_version)
        method = index_art.method
        ann = index_art.load() if method == "ann" else None
    counts = {"users": 0, "rows": 0, "users_fallback_only": 0, "rows_fallback": 0, "users_short": 0}
    counts.update({"users_recomputed": 0, "users_carried": 0, "users_refreshed": 0})
    carried = quiet_lists(ctx, model_art, model, inter, items)
    refresh = cfg.incremental.quiet_users == "refresh" and len(carried.users) > 0
    hot = hot_items(inter, len(items), cfg.incremental.refresh_items) if refresh else None
    item_id_col = pa.array(items["item_id"].to_numpy(), pa.string())

    with ctx.store.writer(ctx.name, CANDIDATES, ctx.session_date, shard=ctx.shard, run_id=ctx.run_id) as w:
        with model_art.open_users() as uf, inter.open_pairs() as inf:
            users_pf, inter_pf = pq.ParquetFile(uf), pq.ParquetFile(inf)
            total = users_pf.metadata.num_rows
            with (
                w.parquet_writer("part.parquet", CANDIDATE_SCHEMA) as out,
                progress(
                    total=total,
                    unit="user",
                    desc=f"candidates shard {ctx.shard_index}/{ctx.shard_count}",
                    disable=None if ctx.show_progress else True,
                ) as bar,
            ):
                for block in iter_user_blocks(users_pf, inter_pf, len(items), cfg.candidates.batch_size):
                    bar.update(len(block.user_idx))
                    mine = ctx.mine(block.user_ids)
                    if not mine.any():
                        continue
                    block = UserBlock(block.user_idx[mine], block.user_ids[mine], block.seen[mine])
                    positions = carried.positions(block.user_ids)
                    carry = positions >= 0
                    ids = np.empty((len(block.user_idx), n), np.int32)
                    scores = np.empty((len(block.user_idx), n), np.float32)
                    from_pop = np.empty((len(block.user_idx), n), bool)
                    fresh = np.flatnonzero(~carry)
                    if len(fresh):
                        sub = UserBlock(block.user_idx[fresh], block.user_ids[fresh], block.seen[fresh])
                        ids[fresh], scores[fresh], from_pop[fresh] = recommend_block(
                            model, sub, n, unavailable, popular, popular_scores, ann
                        )
                    kept = np.flatnonzero(carry)
                    if len(kept) and refresh:
                        sub = UserBlock(block.user_idx[kept], block.user_ids[kept], block.seen[kept])
                        ids[kept], scores[kept], from_pop[kept] = refreshed_block(
                            model, sub, positions[kept], carried, hot, n, unavailable, popular, popular_scores
                        )
                    elif len(kept):
                        ids[kept], scores[kept], from_pop[kept] = carried_block(
                            block.seen[kept], positions[kept], carried, n, popular, popular_scores
                        )
                    counts["users_recomputed"] += len(fresh)
                    counts["users_refreshed" if refresh else "users_carried"] += len(kept)
                    valid = ids >= 0
                    counts["users"] += len(block.user_idx)
                    counts["users_fallback_only"] += int((from_pop | ~valid).all(axis=1).sum())
                    counts["users_short"] += int((~valid).any(axis=1).sum())
                    counts["rows_fallback"] += int(from_pop.sum())
                    counts["rows"] += int(valid.sum())
                    rank = np.broadcast_to(np.arange(1, n + 1, dtype=np.int32), ids.shape)
                    # string columns by Arrow take (row-major, as the mask): no per-row Python str objects
                    rows = np.nonzero(valid)[0]
                    out.write_table(
                        pa.table(
                            {
                                "user_id": pa.array(block.user_ids, pa.string()).take(rows),
                                "item_id": item_id_col.take(ids[valid]),
                                "rank": pa.array(rank[valid], pa.int32()),
                                "score": pa.array(scores[valid], pa.float32()),
                                "source": SOURCE_NAMES.take(from_pop[valid].astype(np.int8)),
                            },
                            schema=CANDIDATE_SCHEMA,
                        )
                    )
        timings = {"total_s": round(time.perf_counter() - started, 3)}
        if timings["total_s"] > 0:
            timings["users_per_s"] = round(counts["users"] / timings["total_s"], 1)
        w.metadata.update(
            {
                "run": ctx.run_record(),
                "model_version": model_version,
                "method": method,
                "counts": counts,
                "timings": timings,
                "shard": list(ctx.shard),
                "carried": carried.reason,
                "quiet_users": cfg.incremental.quiet_users if len(carried.users) else "rescore",
                "hot_items": 0 if hot is None else len(hot),
            }
        )
    log.info(
        "candidates done",
        extra={
            "pipeline": ctx.name,
            "dt": str(ctx.session_date),
            "shard": ctx.shard_index,
            "method": method,
            **counts,
        },
    )
    return {"method": method, "counts": counts, "timings": timings}
