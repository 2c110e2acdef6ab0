"""Approximate maximum-inner-product search (MIPS) over item factors, for candidate generation at scale.

Scoring every user against every item (:mod:`models.topk`) costs users x items x factors; an index over the item
factors answers "the N items with the largest ``u . v``" by looking at a small part of the catalogue. The library
is faiss (``faiss-cpu``; ``faiss-gpu*`` wheels for the GPU variant), chosen by measurement: docs/ann.md.

    from models.ann import AnnParams, build_index, load_index

    index = build_index(model.item_factors[available], item_idx=available, n_items=model.n_items,
                        params=AnnParams(kind="ivf_flat"))
    ids, scores = index.search(model.user_factors[users], 50, exclude=seen[users], filter_items=unavailable)
    index.save("index.npz")
    same = load_index("index.npz")

Conventions are those of the models' ``recommend`` (models/base.py): int32 item indices (of the catalogue the
model was trained on, not positions in the index) and float32 scores, best first, ties by lower item index,
rows padded with ``-1`` / ``-inf`` where fewer than ``N`` eligible items were found.

Kinds (``AnnParams.kind``):

* ``exact``: no approximation; scores with :func:`models.topk.topk_scores` (used for tiny catalogues).
* ``ivf_flat``: faiss ``IndexIVFFlat`` with ``METRIC_INNER_PRODUCT``: k-means cells over the items, a query
  scans the ``nprobe`` cells whose centroids score highest. Scores are exact inner products. The default.
* ``ivf_pq``: ``IndexIVFPQ`` (``pq_m`` bytes a vector), re-ranked exactly with ``IndexRefineFlat``.
* ``hnsw``: ``IndexHNSWFlat`` on inner product. Measured on MF factors it reaches recall@50 0.97 at 200k items;
  the MIPS-to-L2 transform (one extra coordinate, Bachrach et al. 2014) reached only 0.22-0.27 (docs/ann.md).
  No GPU variant in faiss.
* ``auto``: ``exact`` below ``exact_below`` items, else ``ivf_flat``.

Filtering: items never to be returned for any query (``filter_items``) are dropped inside the search by a faiss
ID selector on CPU (over-fetched on GPU, where selectors are not supported); each user's already-seen items
(``exclude``, a CSR with one row per query) are handled by over-fetching ``N + (seen items in the index)``
and dropping them, so a user never gets fewer than ``N`` items because of their history. Build the index over
the available items only: filtering is then only needed for items that went off sale after the build.

Persistence: ``save`` writes one ``.npz`` (no pickle) with the serialised faiss index, the item map and the
parameters as JSON, to a path or a binary file object (an fsspec file works). ``device="gpu"`` builds and
searches with faiss's GPU index (IVF kinds; faiss has no GPU HNSW) and is saved as its CPU form, so a GPU-built
index loads anywhere. GPU libraries are imported only when asked for.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from typing import IO, Any

import numpy as np
import scipy.sparse as sp

from .topk import DEFAULT_BATCH_SIZE, available_cores, topk_scores

FORMAT_VERSION = 1
INDEX_KINDS = ("auto", "exact", "ivf_flat", "ivf_pq", "hnsw")
DEVICES = ("cpu", "gpu")
GPU_MAX_K = 2048  # faiss GPU indexes answer at most this many neighbours per query

FileLike = str | os.PathLike | IO[bytes]

__all__ = [
    "AnnIndex",
    "AnnParams",
    "GPU_MAX_K",
    "INDEX_KINDS",
    "build_index",
    "check_finite",
    "default_nlist",
    "default_nprobe",
    "faiss_gpu_available",
    "load_index",
]


@dataclass(frozen=True)
class AnnParams:
    """How to build and query an index. ``None`` values are resolved at build time (see ``resolved``)."""

    kind: str = "auto"
    nlist: int | None = None  # IVF cells; None: default_nlist(n_items)
    nprobe: int | None = None  # IVF cells scanned per query; None: default_nprobe(nlist, n_items)
    pq_m: int = 16  # ivf_pq: bytes per vector (sub-quantisers); must divide the factor count
    refine_factor: int = 4  # ivf_pq: candidates re-ranked exactly = refine_factor x k
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 256
    exact_below: int = 20_000  # auto: catalogues smaller than this are scored exactly
    train_sample: int | None = None  # max k-means training points; None: 64 per cell (faiss asks >= 39)
    kmeans_iterations: int = 10  # faiss's default is 25; 10 gives the same recall here at 40 % of the build
    device: str = "cpu"
    num_threads: int = 0  # 0: all cores available to the process
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise ValueError(f"unknown index kind {self.kind!r}; known: {', '.join(INDEX_KINDS)}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("kind", "device"):
                continue
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int | np.integer):
                raise ValueError(f"ANN parameter {f.name!r} must be an integer, got {v!r}")
            low = 0 if f.name in ("num_threads", "seed", "exact_below") else 1
            if v < low:
                raise ValueError(f"ANN parameter {f.name!r} must be >= {low}, got {v}")
        if self.device == "gpu" and self.kind == "hnsw":
            raise ValueError("kind 'hnsw' has no faiss GPU variant; use ivf_flat or ivf_pq with device 'gpu'")

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> AnnParams:
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown ANN parameter(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_nlist(n_items: int) -> int:
    """IVF cells for a catalogue: about 4 x sqrt(n) (faiss's guideline), a power of two, at most n / 39 so
    that k-means has the 39 training points per cell faiss asks for."""
    target = 4 * math.sqrt(max(n_items, 1))
    nlist = 2 ** round(math.log2(max(target, 1)))
    return int(max(1, min(nlist, n_items // 39, 65536)))


MIN_SCANNED_ITEMS = 10_000  # default_nprobe: items a query scans at least (see there)


def default_nprobe(nlist: int, n_items: int | None = None) -> int:
    """Cells scanned per query: max(64, nlist / 64), and enough cells that a query scans at least
    MIN_SCANNED_ITEMS items (small catalogues, whose cells hold few items). Recall tracks the items scanned
    more than the share of cells. Measured recall@50: structured factors (docs/ann.md) 0.954 at 200k items
    (2,048 cells, 64 probes, ~6k items scanned) and 0.978 at 1M (4,096 cells, 64 probes, ~16k); the ALS model of
    bench/run.py's 10M events (45k items, 1,024 cells) 0.934 with 64 probes (~2.8k items scanned), 0.948 /
    0.955 / 0.961 with 128 / 192 / 256; 10,000 items is 228 probes there. Recall first: the index gate fails a
    build below 0.95, and the index step's config can trade recall for speed."""
    nprobe = max(64, nlist // 64)
    if n_items:
        nprobe = max(nprobe, math.ceil(MIN_SCANNED_ITEMS * nlist / n_items))
    return min(nprobe, max(nlist, 1))


def check_finite(factors: np.ndarray, what: str) -> None:
    """ValueError naming ``what`` when a factor matrix holds NaN or inf."""
    bad = ~np.isfinite(factors)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1)) if factors.ndim == 2 else np.flatnonzero(bad)
        raise ValueError(
            f"{what} contain NaN or inf ({len(rows)} rows, first at row {int(rows[0])}); refusing to index a "
            "diverged model"
        )


def faiss_gpu_available() -> bool:
    """Whether the installed faiss is a GPU build and sees a CUDA device."""
    try:
        import faiss
    except ImportError:
        return False
    get = getattr(faiss, "get_num_gpus", None)
    return bool(get and get() > 0 and hasattr(faiss, "StandardGpuResources"))


def _faiss():
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - faiss-cpu is a dependency
        raise ImportError("approximate search needs faiss: pip install faiss-cpu (or faiss-gpu-cu12)") from e
    return faiss


def _threads(num_threads: int) -> int:
    return num_threads if num_threads > 0 else available_cores()


def _resolve(params: AnnParams, n: int, dim: int) -> AnnParams:
    kind = params.kind
    if kind == "auto":
        kind = "exact" if n < params.exact_below else "ivf_flat"
    if kind in ("ivf_flat", "ivf_pq") and n < 39:
        kind = "exact"  # too few items to train even one cell
    values = params.to_dict()
    values["kind"] = kind
    if kind in ("ivf_flat", "ivf_pq"):
        nlist = min(params.nlist or default_nlist(n), max(1, n // 39))
        values["nlist"] = nlist
        values["nprobe"] = min(params.nprobe or default_nprobe(nlist, n), nlist)
    if kind == "ivf_pq" and dim % params.pq_m:
        raise ValueError(f"pq_m={params.pq_m} must divide the factor count {dim}")
    if kind == "exact":
        values["device"] = "cpu"  # exact scoring is our own CPU top-N
    return AnnParams(**values)


class AnnIndex:
    """A built index over item factors; create with :func:`build_index` or :func:`load_index`."""

    def __init__(
        self,
        params: AnnParams,
        item_idx: np.ndarray,
        n_items: int,
        dim: int,
        *,
        faiss_index: Any = None,
        exact_factors: np.ndarray | None = None,
        build_info: dict | None = None,
    ) -> None:
        self.params = params
        self.item_idx = np.ascontiguousarray(item_idx, dtype=np.int32)
        self.n_items = int(n_items)  # catalogue size: ids returned and filters are in [0, n_items)
        self.dim = int(dim)
        self._faiss_index = faiss_index  # CPU form (what is saved)
        self._search_index = faiss_index  # what is queried: the CPU form or its GPU copy
        self._exact_factors = exact_factors
        self.build_info = dict(build_info or {})
        self._position: np.ndarray | None = None
        if params.device == "gpu" and faiss_index is not None:
            self._search_index = _to_gpu(faiss_index)

    # -- facts -------------------------------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return self.params.kind

    @property
    def size(self) -> int:
        """Items in the index."""
        return len(self.item_idx)

    def describe(self) -> dict[str, Any]:
        """Parameters (resolved), size and build facts: what the index step records."""
        return {
            "kind": self.kind,
            "params": self.params.to_dict(),
            "items_indexed": self.size,
            "n_items": self.n_items,
            "factors": self.dim,
            **self.build_info,
        }

    def position(self) -> np.ndarray:
        """Catalogue item index -> position in the index (-1: not indexed)."""
        if self._position is None:
            pos = np.full(self.n_items, -1, dtype=np.int64)
            pos[self.item_idx] = np.arange(self.size)
            self._position = pos
        return self._position

    # -- search ------------------------------------------------------------------------------------------------
    def search(
        self,
        user_vecs: np.ndarray,
        N: int,
        *,
        exclude: sp.csr_matrix | None = None,
        filter_items: np.ndarray | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE * 8,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``N`` items by inner product for each query row (approximate unless kind is ``exact``).

        ``exclude``: CSR (n_queries x n_items), the stored entries of row ``i`` are never returned for query
        ``i`` (already-seen items). ``filter_items``: item indices never returned. Returns int32 item indices
        and float32 scores ``(n_queries, N)``, best first, ties by lower item index, padded with -1 / -inf.
        Memory is bounded by ``batch_size`` query rows at a time.
        """
        user_vecs = np.ascontiguousarray(user_vecs, dtype=np.float32)
        if user_vecs.ndim != 2 or user_vecs.shape[1] != self.dim:
            raise ValueError(f"user vectors have shape {user_vecs.shape}, the index {self.dim} factors")
        if N < 0:
            raise ValueError(f"N must be >= 0, got {N}")
        check_finite(user_vecs, "user factors")
        nq = user_vecs.shape[0]
        if exclude is not None:
            if not sp.issparse(exclude) or exclude.format != "csr":
                raise ValueError("exclude must be a scipy.sparse CSR matrix (one row per query)")
            if exclude.shape != (nq, self.n_items):
                raise ValueError(f"exclude has shape {exclude.shape}, expected ({nq}, {self.n_items})")
        if filter_items is not None:
            filter_items = np.asarray(filter_items, dtype=np.int64).reshape(-1)
            if filter_items.size and (filter_items.min() < 0 or filter_items.max() >= self.n_items):
                raise IndexError(f"filter_items out of range [0, {self.n_items})")
        ids_out = np.full((nq, N), -1, dtype=np.int32)
        scores_out = np.full((nq, N), -np.inf, dtype=np.float32)
        if nq == 0 or N == 0 or self.size == 0:
            return ids_out, scores_out
        if self.kind == "exact":
            return self._search_exact(user_vecs, N, exclude, filter_items, batch_size)
        filtered_pos = None
        if filter_items is not None and filter_items.size:
            filtered_pos = self.position()[filter_items]
            filtered_pos = np.unique(filtered_pos[filtered_pos >= 0])
        for start in range(0, nq, batch_size):
            stop = min(start + batch_size, nq)
            block_ex = exclude[start:stop] if exclude is not None else None
            ids, scores = self._search_block(user_vecs[start:stop], N, block_ex, filtered_pos)
            ids_out[start:stop], scores_out[start:stop] = ids, scores
        return ids_out, scores_out

    def _search_exact(self, user_vecs, N, exclude, filter_items, batch_size):
        # columns of the index = positions; map the catalogue's exclusions and filters onto them
        pos = self.position()
        ex = exclude[:, self.item_idx].tocsr() if exclude is not None else None
        filt = None
        if filter_items is not None and filter_items.size:
            filt = pos[filter_items]
            filt = np.unique(filt[filt >= 0])
        ids, scores = topk_scores(
            user_vecs,
            self._exact_factors,
            N,
            exclude_csr_rows=ex,
            filter_items=filt,
            batch_size=min(batch_size, DEFAULT_BATCH_SIZE),
            num_threads=self.params.num_threads,
        )
        mapped = np.where(ids >= 0, self.item_idx[np.maximum(ids, 0)], -1).astype(np.int32)
        return _order_rows(mapped, scores)

    def _search_block(
        self,
        q: np.ndarray,
        N: int,
        exclude: sp.csr_matrix | None,
        filtered_pos: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        faiss = _faiss()
        faiss.omp_set_num_threads(_threads(self.params.num_threads))
        nb = q.shape[0]
        on_gpu = self.params.device == "gpu"
        # seen items that are in the index: each needs one more result fetched
        if exclude is not None and exclude.nnz:
            ex_pos = self.position()[exclude.indices]
            in_index = ex_pos >= 0
            per_row = np.add.reduceat(in_index.astype(np.int64), exclude.indptr[:-1]) * (
                np.diff(exclude.indptr) > 0
            )
        else:
            ex_pos = None
            per_row = np.zeros(nb, dtype=np.int64)
        n_filtered = 0 if filtered_pos is None else len(filtered_pos)
        extra_global = n_filtered if on_gpu else 0  # no ID selectors on GPU: over-fetch instead
        want = N + per_row + extra_global
        # group rows by a power-of-two fetch size so a heavy user does not make everyone fetch more
        fetch = np.minimum(2 ** np.ceil(np.log2(np.maximum(want, 1))).astype(np.int64), self.size)
        if on_gpu:
            fetch = np.minimum(fetch, GPU_MAX_K)
        query = q
        ids = np.full((nb, N), -1, dtype=np.int32)
        scores = np.full((nb, N), -np.inf, dtype=np.float32)
        selector = None
        if filtered_pos is not None and len(filtered_pos) and not on_gpu:
            batch_sel = faiss.IDSelectorBatch(filtered_pos.astype(np.int64))
            selector = faiss.IDSelectorNot(batch_sel)
        for k in np.unique(fetch):
            rows = np.flatnonzero(fetch == k)
            k = int(k)
            params = self._search_params(faiss, k, selector)
            if params is None:
                dist, pos = self._search_index.search(query[rows], k)
            else:
                dist, pos = self._search_index.search(query[rows], k, params=params)
            pos = pos.astype(np.int64)
            valid = pos >= 0
            dist = np.where(valid, dist, -np.inf).astype(np.float32)
            if ex_pos is not None:
                valid &= ~_seen_mask(pos, rows, exclude, ex_pos, self.size)
            if filtered_pos is not None and len(filtered_pos) and on_gpu:
                valid &= ~np.isin(pos, filtered_pos)
            item = np.where(valid, self.item_idx[np.maximum(pos, 0)], -1)
            dist = np.where(valid, dist, -np.inf)
            got_ids, got_scores = _order_rows(item.astype(np.int32), dist.astype(np.float32))
            width = min(N, k)
            ids[rows, :width] = got_ids[:, :width]
            scores[rows, :width] = got_scores[:, :width]
        return ids, scores

    def _search_params(self, faiss, k: int, selector):
        p = self.params
        if self.kind in ("ivf_flat", "ivf_pq"):
            if self.params.device == "gpu":
                self._search_index.nprobe = p.nprobe  # GPU indexes take nprobe as a field
                return None
            if self.kind == "ivf_pq":
                ivf = faiss.SearchParametersIVF(nprobe=p.nprobe)
                if selector is not None:
                    ivf.sel = selector
                return faiss.IndexRefineSearchParameters(
                    k_factor=float(p.refine_factor), base_index_params=ivf
                )
            sp_ = faiss.SearchParametersIVF(nprobe=p.nprobe)
        else:  # hnsw
            sp_ = faiss.SearchParametersHNSW(efSearch=max(p.ef_search, k))
        if selector is not None:
            sp_.sel = selector
        return sp_

    # -- persistence -------------------------------------------------------------------------------------------
    def save(self, file: FileLike) -> None:
        """Write the index as one ``.npz`` (no pickle) to a path or a binary file object."""
        meta = {
            "format_version": FORMAT_VERSION,
            "params": self.params.to_dict(),
            "n_items": self.n_items,
            "dim": self.dim,
            "build_info": self.build_info,
        }
        arrays: dict[str, np.ndarray] = {
            "meta": np.array(json.dumps(meta, sort_keys=True)),
            "item_idx": self.item_idx,
        }
        if self.kind == "exact":
            arrays["exact_factors"] = self._exact_factors
        else:
            arrays["faiss_index"] = _faiss().serialize_index(self._faiss_index)
        if isinstance(file, str | os.PathLike):
            with open(file, "wb") as fh:
                np.savez(fh, **arrays)
        else:
            np.savez(file, **arrays)


def _seen_mask(
    pos: np.ndarray, rows: np.ndarray, exclude: sp.csr_matrix, ex_pos: np.ndarray, size: int
) -> np.ndarray:
    """(len(rows), k) bool: the result at that position is one of its row's excluded items."""
    # (row, position) pairs as int64 keys, one membership test for the whole block
    width = np.int64(size)
    ex_rows = np.repeat(np.arange(exclude.shape[0], dtype=np.int64), np.diff(exclude.indptr))
    keep = ex_pos >= 0
    ex_keys = np.unique(ex_rows[keep] * width + ex_pos[keep])
    res_keys = rows[:, None].astype(np.int64) * width + np.maximum(pos, 0)
    return np.isin(res_keys, ex_keys) & (pos >= 0)


def _order_rows(ids: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row by descending score, ties by lower item index, invalid (-1 / -inf) last."""
    key_item = np.where(ids >= 0, ids, np.iinfo(np.int32).max)
    order = np.lexsort((key_item, -scores), axis=-1) if scores.size else np.empty(scores.shape, np.int64)
    return np.take_along_axis(ids, order, axis=1), np.take_along_axis(scores, order, axis=1)


def _to_gpu(cpu_index):
    faiss = _faiss()
    if not faiss_gpu_available():
        raise RuntimeError(
            "device 'gpu' needs a GPU build of faiss (pip install faiss-gpu-cu12) and a visible CUDA device"
        )
    res = faiss.StandardGpuResources()
    gpu = faiss.index_cpu_to_gpu(res, 0, cpu_index)
    gpu.referenced_resources = res  # keep the resources alive as long as the index
    return gpu


def build_index(
    item_factors: np.ndarray,
    item_idx: np.ndarray | None = None,
    *,
    n_items: int | None = None,
    params: AnnParams | dict | None = None,
) -> AnnIndex:
    """Build an index over ``item_factors`` (one row per indexed item).

    ``item_idx``: the catalogue index of each row (default ``0..len-1``); ``n_items``: the catalogue size
    (default ``max(item_idx) + 1``), the range of ids that ``search`` returns and accepts as filters. Factors
    holding NaN or inf raise ValueError.
    """
    if not isinstance(params, AnnParams):
        params = AnnParams.from_dict(params)
    item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
    if item_factors.ndim != 2 or item_factors.shape[1] == 0:
        raise ValueError(
            f"item factors must be a 2-d (items x factors) array, got shape {item_factors.shape}"
        )
    check_finite(item_factors, "item factors")
    n, dim = item_factors.shape
    if item_idx is None:
        item_idx = np.arange(n, dtype=np.int32)
    item_idx = np.asarray(item_idx).reshape(-1)
    if len(item_idx) != n:
        raise ValueError(f"{len(item_idx)} item indices for {n} factor rows")
    if n and (item_idx.min() < 0 or len(np.unique(item_idx)) != n):
        raise ValueError("item indices must be distinct and >= 0")
    catalogue = int(n_items) if n_items is not None else (int(item_idx.max()) + 1 if n else 0)
    if n and item_idx.max() >= catalogue:
        raise ValueError(f"item index {int(item_idx.max())} out of range for n_items={catalogue}")
    params = _resolve(params, n, dim)
    started = time.perf_counter()
    info: dict[str, Any] = {"library": "models.topk" if params.kind == "exact" else _faiss_version()}
    if params.kind == "exact" or n == 0:
        index = AnnIndex(params, item_idx, catalogue, dim, exact_factors=item_factors, build_info=info)
        index.build_info["build_seconds"] = round(time.perf_counter() - started, 3)
        return index
    faiss = _faiss()
    faiss.omp_set_num_threads(_threads(params.num_threads))
    vectors = item_factors
    if params.kind == "hnsw":
        # on inner product directly: measured on MF factors, the MIPS-to-L2 transform reached recall@50 0.22-0.27
        # where plain inner product reached 0.97 (docs/ann.md)
        cpu = faiss.IndexHNSWFlat(dim, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        cpu.hnsw.efConstruction = params.ef_construction
        cpu.add(vectors)
    else:
        quantizer = faiss.IndexFlatIP(dim)
        if params.kind == "ivf_flat":
            ivf = faiss.IndexIVFFlat(quantizer, dim, params.nlist, faiss.METRIC_INNER_PRODUCT)
        else:
            ivf = faiss.IndexIVFPQ(quantizer, dim, params.nlist, params.pq_m, 8, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.seed = params.seed
        ivf.cp.niter = params.kmeans_iterations
        train = vectors
        limit = params.train_sample or 64 * params.nlist
        if n > limit:  # seeded sample, so a rebuild on the same factors gives the same index
            rng = np.random.default_rng(params.seed)
            train = vectors[np.sort(rng.choice(n, limit, replace=False))]
        ivf.cp.max_points_per_centroid = max(1, math.ceil(len(train) / params.nlist))
        cpu = ivf if params.kind == "ivf_flat" else faiss.IndexRefineFlat(ivf)
        if params.device == "gpu":
            gpu = _to_gpu(ivf)
            gpu.train(train)
            gpu.add(vectors)
            ivf = faiss.index_gpu_to_cpu(gpu)
            cpu = ivf if params.kind == "ivf_flat" else faiss.IndexRefineFlat(ivf)
            if params.kind == "ivf_pq":
                cpu.add(vectors)  # the refine stage keeps the full vectors (on the CPU side)
        else:
            cpu.train(train)
            cpu.add(vectors)
    info["build_seconds"] = round(time.perf_counter() - started, 3)
    info["index_bytes"] = int(_index_bytes(params, n, dim))
    return AnnIndex(params, item_idx, catalogue, dim, faiss_index=cpu, build_info=info)


def _index_bytes(params: AnnParams, n: int, dim: int) -> float:
    """Approximate memory of the index (faiss's published layouts): what the capacity plan uses too."""
    if params.kind == "ivf_flat":
        return n * (dim * 4 + 8) + params.nlist * dim * 4
    if params.kind == "ivf_pq":
        return n * (params.pq_m + 8 + dim * 4) + params.nlist * dim * 4
    if params.kind == "hnsw":
        return n * (dim * 4 + params.hnsw_m * 2 * 4)
    return n * dim * 4


def _faiss_version() -> str:
    return f"faiss {_faiss().__version__}"


def load_index(file: FileLike, *, device: str | None = None) -> AnnIndex:
    """Load an index written by ``AnnIndex.save``; ``device`` overrides where it is searched (cpu | gpu)."""
    with np.load(file, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    if "meta" not in arrays or "item_idx" not in arrays:
        raise ValueError("not a saved ANN index: missing 'meta' or 'item_idx'")
    meta = json.loads(str(arrays["meta"]))
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(
            f"index file format {meta['format_version']} is newer than this code ({FORMAT_VERSION})"
        )
    values = dict(meta["params"])
    if device is not None and values["kind"] != "exact":
        values["device"] = device
    params = AnnParams(**values)
    faiss_index = exact = None
    if params.kind == "exact":
        exact = np.ascontiguousarray(arrays["exact_factors"], dtype=np.float32)
    else:
        faiss_index = _faiss().deserialize_index(arrays["faiss_index"])
        if faiss_index.ntotal != len(arrays["item_idx"]):
            raise ValueError(
                f"corrupt ANN index: {faiss_index.ntotal} vectors for {len(arrays['item_idx'])} item ids"
            )
    return AnnIndex(
        params,
        arrays["item_idx"],
        meta["n_items"],
        meta["dim"],
        faiss_index=faiss_index,
        exact_factors=exact,
        build_info=meta.get("build_info"),
    )
