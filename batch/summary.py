"""A session date's summary, read back from the commit markers of the graph's steps and gates: counts, metrics,
timings, parameters, verdicts.

``steps[NAME]["phases"]`` is where the step's wall time went (batch.timings): start-up, its own work, each
gate, the metric store, alerts and the report; for a sharded step, its slowest shard's.

Used by `reco show summary`, the Slack success message and the run report, so they all tell the same story.
Every step of the graph gets an entry under ``steps``; what a step adds at the top level (``data``, ``model``,
``metrics``, ``export``...) is what its declaration's ``summarize`` returns; every gate's verdict is under
``gates``.
"""

from __future__ import annotations

from datetime import date

import batch.checks.gates  # noqa: F401  registers the gates
import batch.steps  # noqa: F401  registers the steps
from batch import timings
from batch.errors import ArtifactError
from batch.graph import GRAPH
from batch.storage import ArtifactStore, Committed


def _marker(store: ArtifactStore, pipeline: str, dataset: str, dt: date, shard=None) -> Committed | None:
    try:
        return store.committed(pipeline, dataset, dt, step=dataset, shard=shard)
    except ArtifactError:
        return None


def _step_entry(c: Committed) -> dict:
    meta = c.metadata
    run = meta.get("run", {})
    return {
        "run_id": c.run_id,
        "committed_at": c.marker.get("committed_at"),
        "env": run.get("env"),
        "overrides": run.get("overrides", {}),
        "timings": meta.get("timings", {}),
        "counts": meta.get("counts", {}),
        "location": c.url,
    }


def sharded_entry(shards: list[Committed], shard_count: int) -> dict:
    """A sharded step's counts summed over its committed shards, and its slowest shard."""
    counts: dict = {}
    for s in shards:
        for k, v in s.metadata.get("counts", {}).items():
            counts[k] = counts.get(k, 0) + v
    return {
        "shards_committed": len(shards),
        "shard_count": shard_count,
        "counts": counts,
        "timings": {
            "max_shard_s": max((s.metadata.get("timings", {}).get("total_s", 0) for s in shards), default=0)
        },
        "model_version": sorted({s.metadata.get("model_version") for s in shards}),
        "overrides": shards[0].metadata.get("run", {}).get("overrides", {}) if shards else {},
    }


def build_summary(store: ArtifactStore, pipeline: str, dt: date, shard_count: int) -> dict:
    out: dict = {
        "pipeline": pipeline,
        "date": dt.isoformat(),
        "artifact_root": store.root_url,
        "steps": {},
        "gates": {},
    }
    for spec in GRAPH.steps():
        if spec.sharded:
            shards = [_marker(store, pipeline, spec.writes, dt, (i, shard_count)) for i in range(shard_count)]
            done = [s for s in shards if s]
            if done:
                out["steps"][spec.name] = sharded_entry(done, shard_count)
                out["steps"][spec.name]["phases"] = timings.combine_shards(
                    [
                        r
                        for i in range(shard_count)
                        if (r := store.read_timings(pipeline, dt, spec.name, (i, shard_count)))
                    ]
                )
            continue
        marker = _marker(store, pipeline, spec.writes, dt)
        if marker is None:
            continue
        out["steps"][spec.name] = _step_entry(marker)
        out["steps"][spec.name]["phases"] = store.read_timings(pipeline, dt, spec.name) or {}
        if spec.summarize:
            out.update(spec.summarize(marker.metadata))
    for gate in GRAPH.gates():
        verdict = _marker(store, pipeline, gate.dataset, dt)
        if verdict is not None:
            meta = verdict.metadata
            out["gates"][gate.name] = {
                "guards": gate.guards,
                "blocking": gate.blocking,
                "passed": meta.get("passed"),
                "failures": meta.get("failures", []),
                "source_run_id": meta.get("source_run_id"),
            }
    latest = store.latest(pipeline)
    out["published"] = {
        "this_date_published": any(r["dt"] == dt.isoformat() for r in store.publish_records(pipeline)),
        "latest": latest
        and {
            "dt": latest["dt"],
            "model_version": latest["model_version"],
            "files": (store.display_record(latest) or {}).get("files"),
        },
    }
    report = store.report_location(pipeline, dt)
    out["report"] = store.display(report) if store.fs.exists(report) else None
    overrides = {}
    for entry in out["steps"].values():
        overrides.update(entry.get("overrides") or {})
    out["overrides"] = overrides
    return out


def gates_line(summary: dict) -> str:
    """'data checks passed, model gate passed, publish check FAILED': the verdicts of the day in one line."""
    gates = summary.get("gates") or {}
    if not gates:
        return "no gate ran"
    return ", ".join(f"{name} {'passed' if g.get('passed') else 'FAILED'}" for name, g in gates.items())
