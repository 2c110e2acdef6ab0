"""Synthetic factors with real structure for the ANN benchmarks: a trained model's factors, resampled.

The platform's own synthetic traffic (``batch.data.generate``: power-law popularity, taste clusters) is turned
into a users x items weight matrix and fitted with the platform's ALS (``models.create_model('als')``). Its item
factors are then resampled to the wanted catalogue size: each new item is a trained item's vector times a random
scale (log-normal, sd 0.25: popularity spreads norms) plus Gaussian noise (sd 0.35 of each coordinate's spread),
so the clusters, the norm spread and the correlations of real MF factors remain while items are distinct.
Users are resampled the same way from the trained users. Cached under bench/results/ (git-ignored).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import scipy.sparse as sp

import models
from batch.data import SyntheticSpec, generate

CACHE = Path(__file__).resolve().parent / "results" / "ann-factors"
EVENT_WEIGHTS = {"view": 1.0, "like": 4.0, "bookmark": 6.0}  # the demo pipeline's


def trained_factors(factors: int = 64, users: int = 25_000, items: int = 50_000, seed: int = 7):
    """(user_factors, item_factors) of ALS fitted on the platform's synthetic traffic (about 1M events)."""
    events, _ = generate(SyntheticSpec(users=users, items=items, days=28, seed=seed, dirty_share=0.0))
    u = pc.dictionary_encode(events["user_id"]).combine_chunks()
    i = pc.dictionary_encode(events["item_id"]).combine_chunks()
    w = np.vectorize(EVENT_WEIGHTS.get, otypes=[np.float32])(
        events["event_type"].to_numpy(zero_copy_only=False)
    )
    m = sp.csr_matrix(
        (w, (u.indices.to_numpy(), i.indices.to_numpy())), shape=(len(u.dictionary), len(i.dictionary))
    )
    m.sum_duplicates()
    model = models.create_model(
        "als", factors=factors, iterations=15, regularization=0.05, alpha=2.0, seed=seed
    ).fit(m)
    return model.user_factors, model.item_factors


def resample(base: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rows made from random rows of ``base``: scaled (log-normal) plus per-coordinate Gaussian noise."""
    pick = rng.integers(0, len(base), n)
    scale = np.exp(rng.normal(0.0, 0.25, n)).astype(np.float32)
    spread = base.std(axis=0).astype(np.float32)
    out = base[pick] * scale[:, None]
    out += rng.standard_normal((n, base.shape[1]), dtype=np.float32) * (0.35 * spread)
    return np.ascontiguousarray(out, dtype=np.float32)


def structured_factors(
    n_items: int, n_users: int, factors: int = 64, seed: int = 7, cache: bool = True, verbose: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(user_factors n_users x factors, item_factors n_items x factors), float32, seeded and cached."""
    path = CACHE / f"f{factors}-i{n_items}-u{n_users}-s{seed}.npz"
    if cache and path.exists():
        with np.load(path) as z:
            return z["users"], z["items"]
    t = time.perf_counter()
    base_users, base_items = trained_factors(factors, seed=seed)
    rng = np.random.default_rng(seed)
    items = resample(base_items, n_items, rng)
    users = resample(base_users, n_users, rng)
    if verbose:
        print(
            f"[ann-data] trained + resampled {n_items:,} items, {n_users:,} users in {time.perf_counter() - t:.1f}s"
        )
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, users=users, items=items)
    return users, items
