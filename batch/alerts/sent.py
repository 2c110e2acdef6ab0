"""Which failures were already alerted, per Digdag attempt: one Slack message per failure.

A gate that stops the batch (batch/execute.py) sends its own message (which check, value, bound, what stays in
service, the report) and records it here; the workflow's ``_error`` task (``reco notify failure --attempt A``)
then finds the record and sends nothing more. A gate whose message did not get through leaves no record, so the
generic failure message still goes out.

The record lives with the artifacts, the one place both sides reach (the step runs in a pod, ``_error`` on the
Digdag agent): ``<artifact root>/<pipeline>/_alerts/dt=<date>/attempt=<id>.json``. The step learns its attempt
from ``$RECO_ATTEMPT``, which ``reco submit`` puts into the Job's container (batch/runners/manifests.py); a step
run without one (``reco run``, a manual ``reco step``) has no ``_error`` task after it and records nothing.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import re
from datetime import UTC, date, datetime

from batch.storage import ArtifactStore, write_bytes_atomic

log = logging.getLogger("reco.alerts.sent")

ATTEMPT_ENV = "RECO_ATTEMPT"


def _path(store: ArtifactStore, pipeline: str, dt: date, attempt: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", attempt)
    return posixpath.join(store.root, pipeline, "_alerts", f"dt={dt.isoformat()}", f"attempt={safe}.json")


def alerts_for(store: ArtifactStore, pipeline: str, dt: date, attempt: str) -> list[dict]:
    """The failures alerted for one attempt, oldest first; [] when none (or the record is unreadable)."""
    try:
        with store.fs.open(_path(store, pipeline, dt, attempt), "rb") as f:
            data = json.loads(f.read())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as e:
        log.warning("alert record unreadable; treating the failure as not alerted", extra={"error": str(e)})
        return []
    return [a for a in data.get("alerts", []) if isinstance(a, dict)] if isinstance(data, dict) else []


def record_alert(
    store: ArtifactStore,
    pipeline: str,
    dt: date,
    *,
    source: str,
    summary: str,
    attempt: str | None = None,
) -> bool:
    """Record that ``source`` (a gate's name) alerted a failure that stops the batch; never raises.

    ``attempt`` defaults to ``$RECO_ATTEMPT``; without one nothing is recorded (False)."""
    attempt = attempt or os.environ.get(ATTEMPT_ENV)
    if not attempt:
        return False
    try:
        alerts = alerts_for(store, pipeline, dt, attempt)
        alerts.append(
            {
                "source": source,
                "summary": summary[:500],
                "alerted_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
        doc = {"pipeline": pipeline, "date": dt.isoformat(), "attempt": attempt, "alerts": alerts}
        write_bytes_atomic(store.fs, _path(store, pipeline, dt, attempt), json.dumps(doc, indent=1).encode())
        return True
    except Exception as e:  # the alert went out; losing its record costs at most a second message
        log.warning("could not record the alert", extra={"error": f"{type(e).__name__}: {e}"})
        return False
