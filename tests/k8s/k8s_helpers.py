"""Helpers shared by the k8s tests."""

from __future__ import annotations

from batch.config import PROJECT_ROOT
from batch.runners import manifests
from batch.runners.base import StepRun

OVERLAYS = ("dev", "staging", "prod")
K8S_VERSION = "1.33.0"  # GKE REGULAR/STABLE channels; backoffLimitPerIndex and podFailurePolicy are GA here
__all__ = [
    "OVERLAYS",
    "K8S_VERSION",
    "PROJECT_ROOT",
    "JOB_CLASSES",
    "pod_specs",
    "by_kind",
    "named",
    "class_dirs",
    "built_jobs",
]
JOB_CLASSES = PROJECT_ROOT / "k8s/base/batch/classes"  # one directory per resource class


def class_dirs(root=JOB_CLASSES) -> list[str]:
    """The resource classes as the files say: every directory under k8s/base/batch/classes/."""
    return sorted(p.name for p in root.iterdir() if (p / "kustomization.yaml").is_file())


def pod_specs(doc: dict) -> list[dict]:
    kind = doc.get("kind")
    if kind == "Job":
        return [doc["spec"]["template"]["spec"]]
    if kind in ("Deployment", "StatefulSet", "DaemonSet"):
        return [doc["spec"]["template"]["spec"]]
    if kind == "Pod":
        return [doc["spec"]]
    return []


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d.get("kind") == kind]


def named(docs: list[dict], kind: str, name: str) -> dict:
    found = [d for d in docs if d.get("kind") == kind and d["metadata"]["name"].startswith(name)]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def built_jobs(docs: list[dict], env: str) -> list[dict]:
    """The Jobs `reco submit` would create for every class, plain and sharded (what really reaches the cluster)."""
    jobs = []
    for cls in manifests.resource_classes(docs):
        for step, sharded in (("train", False), ("candidates", True)):
            run = StepRun(
                pipeline="demo",
                step=step,
                session_date="2026-11-21",
                env=env,
                attempt=f"{cls}-{int(sharded)}",
                resource_class=cls,
                sharded=sharded,
                shard_count=4 if sharded else 1,
                overrides={"model.factors": "32"},
            )
            jobs.append(manifests.build_job(docs, run, "reco-batch"))
    return jobs
