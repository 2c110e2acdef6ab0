"""Helpers shared by the k8s tests."""

from __future__ import annotations

from batch.config import PROJECT_ROOT

OVERLAYS = ("dev", "staging", "prod")
K8S_VERSION = "1.33.0"  # GKE REGULAR/STABLE channels; backoffLimitPerIndex and podFailurePolicy are GA here
__all__ = ["OVERLAYS", "K8S_VERSION", "PROJECT_ROOT", "pod_specs", "by_kind", "named", "class_dirs"]
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
