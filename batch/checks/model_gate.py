"""The model gate after train, and the promoted-model pointer.

The reference is the model in service for the session date: the one behind the previous publish (the latest
publish before the date). The gate compares the new model with it (``checks.model``):

- metric: the offline metric (default ndcg@10 on the train step's temporal holdout), by default as its lift over
  the popularity baseline scored on the same holdout (``compare: lift``: each day's holdout is a different test
  set, the ratio cancels how hard the day was), must not drop more than ``max_relative_drop`` below the
  reference's recorded value (skipped when either side evaluated fewer than
  ``min_users_evaluated`` users, or when nothing is promoted yet).
- overlap: mean overlap@k between the new model's top-k and the previous publish's top-k, over a seeded sample
  of returning users (in the previous publish and with history today). A model whose outputs move under every
  user fails here even when its offline metric looks fine.
- score_shift: two-sample KS statistic between the new and the published top-k scores of the same users
  (warn by default: a retrain may rescale scores legitimately).

Promotion: a model is *promoted* when a publish made from it succeeds (the publish step moves the store's
promoted-model pointer, batch.storage.PROMOTED_MODEL). The records carry the model's run directory, which the
store's garbage collection then keeps, and the metrics this gate compares against. A model that fails the gate
never reaches export, so it is never promoted and the previous model and publish stay in service.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import scipy.sparse as sp

from batch.checks.data import CheckResult, _outcome
from batch.config import ModelGateConfig
from batch.storage import ArtifactStore

# -- the gate ----------------------------------------------------------------------------------------------------


@dataclass
class Candidate:
    """The new model and what is needed to recommend with it."""

    model: object
    metrics: dict
    model_version: str
    user_ids: np.ndarray  # index = user_idx
    item_ids: np.ndarray  # index = item_idx
    seen: sp.csr_matrix  # users x items
    unavailable: np.ndarray


def _metric_value(metrics: dict, cfg) -> float | None:
    """The compared value: the metric itself, or its lift over the popularity baseline on the same holdout."""
    value = (metrics.get("model") or {}).get(cfg.metric)
    if value is None or cfg.compare == "absolute":
        return value
    base = (metrics.get("popularity_baseline") or {}).get(cfg.metric)
    return value / base if base else None


def _metric_check(cand: Candidate, ref: dict | None, cfg) -> CheckResult:
    label = cfg.metric if cfg.compare == "absolute" else f"{cfg.metric} lift over popularity"
    bound = f">= (1 - {cfg.max_relative_drop:g}) x promoted"
    new_metrics = cand.metrics or {}
    new_value = _metric_value(new_metrics, cfg)
    if ref is None:
        return CheckResult("metric", "skipped", new_value, bound, "no promoted model yet", cfg.severity)
    old_metrics = ref.get("metrics") or {}
    old_value = _metric_value(old_metrics, cfg)
    if new_value is None or old_value is None:
        return CheckResult(
            "metric",
            "skipped",
            new_value,
            bound,
            f"{label} missing on one side (evaluation disabled?)",
            cfg.severity,
        )
    n_new = (new_metrics.get("model") or {}).get("users_evaluated", 0)
    n_old = (old_metrics.get("model") or {}).get("users_evaluated", 0)
    if min(n_new, n_old) < cfg.min_users_evaluated:
        return CheckResult(
            "metric",
            "skipped",
            new_value,
            bound,
            f"too few users evaluated ({n_new} new, {n_old} promoted; min {cfg.min_users_evaluated})",
            cfg.severity,
        )
    floor = old_value * (1 - cfg.max_relative_drop)
    ok = new_value >= floor
    drop = 1 - new_value / old_value if old_value else 0.0
    msg = (
        f"{label} {new_value:.4f} vs promoted {ref['model_version']} {old_value:.4f} "
        f"({-drop:+.1%}; floor {floor:.4f})"
    )
    return CheckResult(
        "metric",
        _outcome(ok, cfg.severity),
        new_value,
        f">= {floor:.4f}",
        ("offline metric dropped: " if not ok else "") + msg,
        cfg.severity,
        {"promoted": old_value, "relative_drop": drop, "compare": cfg.compare},
    )


def previous_top_k(store: ArtifactStore, publish: dict, k: int) -> pa.Table:
    """The personal top-k rows (user_id, item_id, rank, score) of a publish, for the users it had a full
    personal list for; kept in Arrow (millions of rows: only the sampled users' lists become Python lists)."""
    path = (publish.get("files") or {}).get("recommendations.parquet")
    # records hold paths relative to the artifact root (older ones absolute paths or URLs)
    fs, p = fsspec.core.url_to_fs(store.display(path))
    with fs.open(p, "rb") as f:
        t = pq.read_table(
            f, columns=["user_id", "item_id", "rank", "score", "source"], filters=[("rank", "<=", k)]
        )
    t = t.filter(pc.equal(t["source"], "personal"))
    counts = pc.value_counts(t["user_id"])
    full = counts.field("values").filter(pc.greater_equal(counts.field("counts"), k))
    return t.filter(pc.is_in(t["user_id"], value_set=full)).select(["user_id", "item_id", "rank", "score"])


def _shift_checks(
    cand: Candidate, store: ArtifactStore, publish: dict | None, cfg: ModelGateConfig, seed: int
) -> tuple[list[CheckResult], dict]:
    oc, sc = cfg.overlap, cfg.score_shift
    out: list[CheckResult] = []
    if not (oc.enabled or sc.enabled):
        return out, {}
    if publish is None:
        for c, name in ((oc, "overlap"), (sc, "score_shift")):
            if c.enabled:
                out.append(
                    CheckResult(name, "skipped", None, "", "no previous publish to compare with", c.severity)
                )
        return out, {}
    k = oc.k
    prev = previous_top_k(store, publish, k)
    index = {u: i for i, u in enumerate(cand.user_ids)}
    has_history = np.diff(cand.seen.indptr) > 0
    returning = [
        u for u in sorted(pc.unique(prev["user_id"]).to_pylist()) if u in index and has_history[index[u]]
    ]
    rng = np.random.default_rng(seed)
    if len(returning) > oc.sample_users:
        returning = list(rng.choice(np.array(returning, dtype=object), oc.sample_users, replace=False))
    sampled = prev.filter(pc.is_in(prev["user_id"], value_set=pa.array(returning, pa.string())))
    sampled = sampled.to_pandas().sort_values(["user_id", "rank"])
    prev_items = sampled.groupby("user_id")["item_id"].agg(list)
    prev_scores = sampled.groupby("user_id")["score"].agg(list)
    details = {"returning_users_sampled": len(returning), "compared_with": publish["dt"], "k": k}
    if len(returning) < oc.min_users:
        for c, name in ((oc, "overlap"), (sc, "score_shift")):
            if c.enabled:
                out.append(
                    CheckResult(
                        name,
                        "skipped",
                        None,
                        "",
                        f"only {len(returning)} returning users (min {oc.min_users})",
                        c.severity,
                        details,
                    )
                )
        return out, details
    uidx = np.array([index[u] for u in returning], dtype=np.int32)
    ids, scores = cand.model.recommend(
        uidx, cand.seen[uidx], k, filter_already_liked_items=True, filter_items=cand.unavailable
    )
    overlaps, new_scores, old_scores = [], [], []
    for row, u in enumerate(returning):
        new_set = {cand.item_ids[i] for i in ids[row] if i >= 0}
        overlaps.append(len(new_set & set(prev_items[u])) / k)
        new_scores.extend(float(s) for s, i in zip(scores[row], ids[row], strict=True) if i >= 0)
        old_scores.extend(prev_scores[u])
    mean_overlap = float(np.mean(overlaps))
    details["mean_overlap"] = mean_overlap
    if oc.enabled:
        ok = mean_overlap >= oc.min_mean_overlap
        msg = (
            f"mean overlap@{k} with the publish of {publish['dt']} ({publish['model_version']}) is "
            f"{mean_overlap:.3f} over {len(returning)} returning users"
        )
        out.append(
            CheckResult(
                "overlap",
                _outcome(ok, oc.severity),
                mean_overlap,
                f">= {oc.min_mean_overlap:g}",
                ("recommendations shifted under returning users: " if not ok else "") + msg,
                oc.severity,
                dict(details),
            )
        )
    if sc.enabled:
        from scipy.stats import ks_2samp  # scipy.stats takes ~0.6 s to import: only where a gate needs it

        ks = (
            float(ks_2samp(np.asarray(new_scores), np.asarray(old_scores)).statistic)
            if new_scores and old_scores
            else 0.0
        )
        details["score_ks"] = ks
        ok = ks <= sc.max_ks
        out.append(
            CheckResult(
                "score_shift",
                _outcome(ok, sc.severity),
                ks,
                f"<= {sc.max_ks:g}",
                ("score distribution shifted: " if not ok else "")
                + f"KS statistic {ks:.3f} between the new and the "
                f"published top-{k} scores (new median {np.median(new_scores):.4f}, published median "
                f"{np.median(old_scores):.4f})",
                sc.severity,
                {
                    "new_median": float(np.median(new_scores)),
                    "published_median": float(np.median(old_scores)),
                },
            )
        )
    return out, details


def run_gate(
    cand: Candidate,
    store: ArtifactStore,
    pipeline: str,
    session_date: date,
    cfg: ModelGateConfig,
    seed: int = 0,
) -> tuple[list[CheckResult], dict]:
    """(check results, reference info) of a freshly trained model."""
    ref = store.reference_model(pipeline, session_date)
    publish = store.previous_publish(pipeline, session_date)
    results = []
    if cfg.metric.enabled:
        results.append(_metric_check(cand, ref, cfg.metric))
    shift, details = _shift_checks(cand, store, publish, cfg, seed)
    results += shift
    info = {
        "reference_model": ref and ref.get("model_version"),
        "reference_dt": ref and ref.get("dt"),
        "previous_publish": publish and publish.get("dt"),
        **details,
    }
    return results, info
