"""A session date's summary, read back from the commit markers: counts, metrics, timings, parameters.

Used by `reco show summary`, the Slack success message and the run report, so they all tell the same story.
"""

from __future__ import annotations

from datetime import date

from batch.errors import ArtifactError
from batch.storage import ArtifactStore


def _marker(store: ArtifactStore, pipeline: str, dataset: str, dt: date, shard=None):
    try:
        return store.committed(pipeline, dataset, dt, step=dataset, shard=shard)
    except ArtifactError:
        return None


def build_summary(store: ArtifactStore, pipeline: str, dt: date, shard_count: int) -> dict:
    out: dict = {"pipeline": pipeline, "date": dt.isoformat(), "artifact_root": store.root_url, "steps": {}}
    agg = _marker(store, pipeline, "interactions", dt)
    if agg:
        out["data"] = agg.metadata.get("stats", {})
        out["steps"]["aggregate"] = _step_entry(agg)
    model = _marker(store, pipeline, "model", dt)
    if model:
        meta = model.metadata
        out["model"] = {
            "version": meta.get("model_version"),
            "type": meta.get("model_type"),
            "params": meta.get("params"),
        }
        out["metrics"] = meta.get("metrics", {})
        out["steps"]["train"] = _step_entry(model)
    for dataset in ("candidates", "related"):
        shards = [_marker(store, pipeline, dataset, dt, (i, shard_count)) for i in range(shard_count)]
        done = [s for s in shards if s]
        if not done:
            continue
        counts: dict = {}
        for s in done:
            for k, v in s.metadata.get("counts", {}).items():
                counts[k] = counts.get(k, 0) + v
        out["steps"][dataset] = {
            "shards_committed": len(done),
            "shard_count": shard_count,
            "counts": counts,
            "timings": {"max_shard_s": max(s.metadata.get("timings", {}).get("total_s", 0) for s in done)},
            "model_version": sorted({s.metadata.get("model_version") for s in done}),
        }
    export = _marker(store, pipeline, "export", dt)
    if export:
        out["steps"]["export"] = _step_entry(export)
        out["publish_check"] = export.metadata.get("publish_check")
    latest = store.latest(pipeline)
    out["published"] = {
        "this_date_published": any(r["dt"] == dt.isoformat() for r in store.publish_records(pipeline)),
        "latest": latest
        and {"dt": latest["dt"], "model_version": latest["model_version"], "files": latest.get("files")},
    }
    from batch.report import default_location  # report builds on this module

    report = default_location(store, pipeline, dt)
    out["report"] = store.display(report) if store.fs.exists(report) else None
    overrides = {}
    for entry in out["steps"].values():
        overrides.update(entry.get("overrides") or {})
    out["overrides"] = overrides
    return out


def _step_entry(c) -> dict:
    meta = c.metadata
    run = meta.get("run", {})
    return {
        "run_id": c.run_id,
        "committed_at": c.marker.get("committed_at"),
        "env": run.get("env"),
        "overrides": run.get("overrides", {}),
        "timings": meta.get("timings", {}),
        "location": c.url,
    }
