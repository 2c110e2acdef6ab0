"""The publish ledger: what served when, and who or what moved it.

Every publish (including one held by a pin, and a backfill that does not move the serving record), every refusal
(a blocking gate that stopped the batch), every rollback, pin and unpin of a pipeline is one entry::

    {"id", "event": "publish|refused|rollback|pin|unpin", "pipeline", "dt", "model_version", "run_id",
     "run_ids": {...}, "figures": {...}, "actor", "reason", "serving": {"dt", "run_id"} | null, "at", ...}

Entries live in two places:

* the artifact store, one file per event under ``<root>/<pipeline>/published/ledger/<at>-<event>-<id>.json``
  (written atomically, whole: concurrent writers never append to the same object, so there is no append race,
  on local disks and on ``gs://`` alike); the store's copy is the one ``reco show history`` reads;
* the warehouse, one row per entry in ``<metric dataset>.publish_ledger`` next to the metric store's table, for
  SQL over history. Best effort, like the metric store: a warehouse that is busy or down is a warning in the log.

A publish or rollback entry is written right after its commit point (batch.serving); the serving record carries
the same entry, so a crash between the two loses nothing: ``entries`` adds the serving record's entry when its
file is missing.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import uuid
from datetime import UTC, date, datetime

import pandas as pd
import pyarrow as pa

from batch.storage import ArtifactStore, now_utc, write_bytes_atomic
from batch.warehouse import open_warehouse

log = logging.getLogger(__name__)

EVENTS = ("publish", "refused", "rollback", "pin", "unpin")
TABLE_NAME = "publish_ledger"
SCHEMA = pa.schema(
    [
        ("pipeline", pa.string()),
        ("dt", pa.date32()),
        ("event", pa.string()),
        ("model_version", pa.string()),
        ("run_id", pa.string()),
        ("actor", pa.string()),
        ("reason", pa.string()),
        ("entry", pa.string()),  # the whole entry as JSON
        ("recorded_at", pa.timestamp("us", tz="UTC")),
    ]
)


def actor() -> str:
    """Who or what caused an event: a Digdag attempt, a person ($USER), else the batch itself."""
    attempt = os.environ.get("DIGDAG_ATTEMPT_ID") or os.environ.get("RECO_DIGDAG_ATTEMPT_ID")
    if attempt:
        return f"digdag attempt {attempt}"
    user = os.environ.get("USER") or os.environ.get("LOGNAME")
    return f"user {user}" if user else "reco run"


def ledger_dir(store: ArtifactStore, pipeline: str) -> str:
    return posixpath.join(store.root, pipeline, "published", "ledger")


def table_for(metrics_table: str) -> str:
    """The ledger table in the metric store's dataset: ``reco_metrics.run_metrics`` -> ``reco_metrics.publish_ledger``."""
    head, dot, _ = metrics_table.rpartition(".")
    return f"{head}{dot}{TABLE_NAME}"


def new_entry(event: str, pipeline: str, dt: str | date | None, **fields) -> dict:
    if event not in EVENTS:
        raise ValueError(f"unknown ledger event {event!r}")
    at = datetime.now(UTC)
    return {
        "id": at.strftime("%Y%m%dT%H%M%S%fZ") + "-" + event + "-" + uuid.uuid4().hex[:8],
        "event": event,
        "pipeline": pipeline,
        "dt": dt.isoformat() if isinstance(dt, date) else dt,
        "actor": fields.pop("actor", None) or actor(),
        "at": now_utc(),
        **fields,
    }


def write(store: ArtifactStore, entry: dict) -> str:
    """One file per entry, written atomically; returns its path."""
    path = posixpath.join(ledger_dir(store, entry["pipeline"]), f"{entry['id']}.json")
    write_bytes_atomic(store.fs, path, json.dumps(entry, indent=2, sort_keys=True, default=str).encode())
    return path


def entries(store: ArtifactStore, pipeline: str, *, since: date | None = None) -> list[dict]:
    """Every entry of a pipeline, oldest first; ``since``: publishes and refusals of that session date or later,
    rollbacks, pins and unpins made on that day or later."""
    d = ledger_dir(store, pipeline)
    try:
        names = sorted(n for n in store.fs.ls(d, detail=False) if n.endswith(".json"))
    except FileNotFoundError:
        names = []
    out = []
    for name in names:
        try:
            out.append(json.loads(store.fs.cat_file(name)))
        except (ValueError, FileNotFoundError):
            log.warning("unreadable ledger entry skipped", extra={"path": store.display(name)})
    serving = store.serving(pipeline) or {}
    event = serving.get("event")
    if isinstance(event, dict) and event.get("id") not in {e.get("id") for e in out}:
        out.append(event)  # written to SERVING.json, the process died before its ledger file
    out.sort(key=lambda e: e.get("id", ""))
    if since is not None:
        s = since.isoformat()
        # a publish or refusal belongs to its session date; a rollback, pin or unpin to the day it was made
        out = [
            e
            for e in out
            if (e.get("dt") or "") >= s or (e["event"] in ("rollback", "pin", "unpin") and e["at"][:10] >= s)
        ]
    return out


def rows(entries_: list[dict]) -> pa.Table:
    cols: dict[str, list] = {k: [] for k in SCHEMA.names}
    for e in entries_:
        cols["pipeline"].append(e["pipeline"])
        cols["dt"].append(date.fromisoformat(e["dt"]) if e.get("dt") else None)
        cols["event"].append(e["event"])
        cols["model_version"].append(e.get("model_version"))
        cols["run_id"].append(e.get("run_id"))
        cols["actor"].append(e.get("actor"))
        cols["reason"].append(e.get("reason"))
        cols["entry"].append(json.dumps(e, sort_keys=True, default=str))
        cols["recorded_at"].append(pd.Timestamp(e["at"]).to_pydatetime())
    return pa.table(cols, schema=SCHEMA)


def record_warehouse(env, metrics_table: str, entry: dict) -> bool:
    """Append the entry to the warehouse's ledger table; never raises (the store's file is the record)."""
    try:
        with open_warehouse(env, lock_timeout_s=30.0) as wh:
            wh.write_table(table_for(metrics_table), rows([entry]), mode="append")
        return True
    except Exception as e:
        log.warning(
            "ledger entry not recorded in the warehouse",
            extra={
                "pipeline": entry.get("pipeline"),
                "event": entry.get("event"),
                "error": f"{type(e).__name__}: {e}",
            },
        )
        return False


def record(store: ArtifactStore, env, metrics_table: str, entry: dict) -> str:
    """Write the entry to the store (raises on failure) and to the warehouse (best effort)."""
    path = write(store, entry)
    record_warehouse(env, metrics_table, entry)
    return path


def history_command(pipeline: str, env_name: str) -> str:
    """What the run report and the Slack success message link: the command that lists the ledger."""
    return f"reco show history --pipeline {pipeline} --env {env_name}"
