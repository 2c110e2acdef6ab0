"""The cloud workers: one Indexed Job of K pods from the overlay's ``reco-tune-worker`` template.

Every pod runs ``reco tune --stage pod``: prepare (idempotent, under the budget lock), the worker loop, and in the
pod of index 0, once its loop is done, the finish (waits for the other pods' trials, scores, promotes). Pods
reach PostgreSQL through the Cloud SQL Auth Proxy sidecar of the template ($RECO_TUNING_STORAGE). A pod that
is preempted (Spot) or retried is harmless: its trial is failed by heartbeat and retried once, and the budget
is counted in the database.
"""

from __future__ import annotations

from typing import Any

from batch.config import EnvironmentConfig
from batch.errors import ConfigError
from batch.runners import manifests
from batch.runners.gke import GkeRunner

TEMPLATE = "reco-tune-worker"


def build_worker_job(
    env: EnvironmentConfig, pipeline: str, session_date: str, attempt: str, workers: int, args: list[str]
) -> dict[str, Any]:
    docs = manifests.render_overlay(env.kubernetes.overlay)
    found = [d for d in manifests.job_templates(docs) if d["metadata"]["name"] == TEMPLATE]
    if not found:
        raise ConfigError(f"the rendered overlay {env.kubernetes.overlay} has no Job template {TEMPLATE!r}")
    job = found[0]
    name = manifests.job_name(pipeline, "tune", session_date, attempt)
    labels = {k: v for k, v in job["metadata"].get("labels", {}).items() if k != manifests.TEMPLATE_LABEL}
    run_labels = {
        "app.kubernetes.io/managed-by": "reco-tune",
        "reco.io/pipeline": manifests.label_value(pipeline),
        "reco.io/step": "tune",
        "reco.io/date": session_date,
        "reco.io/attempt": manifests.label_value(attempt),
        "reco.io/env": env.name,
    }
    job["metadata"] = {
        "name": name,
        "namespace": env.kubernetes.namespace,
        "labels": {**labels, **run_labels},
        "annotations": {**job["metadata"].get("annotations", {}), "reco.io/template": TEMPLATE},
    }
    spec = job["spec"]
    spec.pop("suspend", None)
    spec["completions"] = workers
    spec["parallelism"] = workers
    spec["template"].setdefault("metadata", {}).setdefault("labels", {}).update(run_labels)
    container = next(c for c in spec["template"]["spec"]["containers"] if c["name"] == manifests.CONTAINER)
    container["args"] = args
    return job


def run_workers(env: EnvironmentConfig, job: dict[str, Any]) -> None:
    GkeRunner(env).run_job(job)
