"""The tuned parameter set in service: a versioned committed artifact, a pointer with its history, rollback.

Layout under the artifact root::

    <root>/<pipeline>/tuned_params/dt=<study date>/run=<id>/tuned_params.json   (committed, ArtifactStore.writer)
    <root>/<pipeline>/tuned_params/CURRENT.json    {"current": entry | null, "history": [older entries]}

An entry carries the ``--set`` style overrides and their provenance (study, trial, date, gain), so a rollback
never depends on an older run directory still existing. ``tuned_overrides`` is what the daily run applies (the
CLI merges it under the explicit ``--set`` options, batch/cli/common.py); ``rollback`` makes the previous entry
current again (or none: the config's own parameters).
"""

from __future__ import annotations

import json
import posixpath
from datetime import date
from typing import Any

from batch.errors import CorruptArtifactError, RecoError
from batch.storage import ArtifactStore, now_utc, write_bytes_atomic

DATASET = "tuned_params"
FILE = "tuned_params.json"
POINTER = "CURRENT.json"
PROVENANCE_KEY = (
    "tuned_params"  # the entry in a run's recorded overrides that says where the tuned set came from
)


def _pointer_path(store: ArtifactStore, pipeline: str) -> str:
    return posixpath.join(store.root, pipeline, DATASET, POINTER)


def read_pointer(store: ArtifactStore, pipeline: str) -> dict:
    path = _pointer_path(store, pipeline)
    try:
        doc = json.loads(store.fs.cat_file(path))
    except FileNotFoundError:
        return {"current": None, "history": []}
    except ValueError as e:
        raise CorruptArtifactError(f"not valid JSON ({e})", path=store.display(path), step="tune") from None
    if not isinstance(doc, dict) or "history" not in doc:
        raise CorruptArtifactError("not a tuned-parameters pointer", path=store.display(path), step="tune")
    return doc


def _write_pointer(store: ArtifactStore, pipeline: str, doc: dict) -> None:
    write_bytes_atomic(
        store.fs, _pointer_path(store, pipeline), json.dumps(doc, indent=2, default=str).encode()
    )


def to_overrides(model_type: str, params: dict[str, Any]) -> dict[str, str]:
    """``--set`` style overrides (values as YAML scalars, the way load_pipeline parses them)."""
    out = {"model.type": model_type}
    for name, value in sorted(params.items()):
        out[f"model.params.{name}"] = json.dumps(value)
    return out


def promote(store: ArtifactStore, pipeline: str, record: dict, run_id: str | None = None) -> dict:
    """Commit the tuned set as an artifact and make it current. ``record`` holds at least ``dt``, ``study``,
    ``trial``, ``gain``, ``model_type`` and ``params``. Returns the pointer entry."""
    entry = {
        **{k: record[k] for k in ("dt", "study", "trial", "gain", "model_type", "params")},
        "overrides": to_overrides(record["model_type"], record["params"]),
        "promoted_at": now_utc(),
    }
    with store.writer(pipeline, DATASET, date.fromisoformat(record["dt"]), run_id=run_id) as w:
        w.write_json(FILE, {**record, **entry})
        w.metadata.update({"study": entry["study"], "trial": entry["trial"], "gain": entry["gain"]})
    entry["run_dir"] = w.run_dir
    doc = read_pointer(store, pipeline)
    history = list(doc.get("history") or [])
    if doc.get("current"):
        history.append(doc["current"])
    _write_pointer(store, pipeline, {"current": entry, "history": history})
    return entry


def rollback(store: ArtifactStore, pipeline: str) -> tuple[dict | None, dict | None]:
    """Return to the previous tuned set (or to none). Returns (the set rolled back from, the set now current)."""
    doc = read_pointer(store, pipeline)
    current = doc.get("current")
    if current is None:
        raise RecoError(
            f"{pipeline}: no tuned parameter set is in service, nothing to roll back",
            hint=f"reco tune --show --pipeline {pipeline}",
        )
    history = list(doc.get("history") or [])
    previous = history.pop() if history else None
    rolled = {**current, "rolled_back_at": now_utc()}
    _write_pointer(
        store,
        pipeline,
        {"current": previous, "history": history, "rolled_back": [*doc.get("rolled_back", []), rolled]},
    )
    return current, previous


def provenance(entry: dict) -> dict:
    return {
        "study": entry["study"],
        "trial": entry["trial"],
        "dt": entry["dt"],
        "gain": entry["gain"],
        "promoted_at": entry.get("promoted_at"),
        "keys": sorted(entry["overrides"]),
    }


def tuned_overrides(store: ArtifactStore, pipeline_name: str) -> tuple[dict[str, str], dict | None]:
    """(``--set`` style overrides of the tuned set in service, its provenance), or ({}, None) when none is.

    Validation against the pipeline config is the caller's (it knows the env and the explicit options)."""
    entry = read_pointer(store, pipeline_name).get("current")
    if not entry:
        return {}, None
    return dict(entry["overrides"]), provenance(entry)
