"""The names shared with k8s/base are defined once (terraform/modules/names) and match the manifests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from tf_helpers import ENVS, K8S_BASE, REPO_ROOT, load_settings, names_locals

from batch.runners.manifests import job_templates, render_overlay

WI_ANNOTATION = "iam.gke.io/gcp-service-account"


def test_names_module_holds_the_agreed_names() -> None:
    names = names_locals()
    pairs = {
        (wi["namespace"], wi["ksa"], wi["gsa_account_id"]) for wi in names["workload_identities"].values()
    }
    assert pairs == {
        ("reco-batch", "reco-batch", "reco-batch"),
        ("digdag", "digdag-worker", "digdag-worker"),
        ("digdag", "digdag-server", "digdag-server"),
    }
    assert names["namespaces"] == {"batch": "reco-batch", "digdag": "digdag"}
    assert names["node_class_label"] == "reco.io/node-class"
    assert names["node_classes"] == {
        "system": "system",
        "standard": "standard",
        "highmem": "highmem",
        "gpu": "gpu",
    }
    assert names["highmem_taint"] == {"key": "reco.io/highmem", "value": "true", "effect": "NO_SCHEDULE"}
    assert names["gpu_taint"] == {"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}
    assert names["artifact_registry_repository"] == "reco"
    assert names["bucket_suffixes"] == {"artifacts": "reco-artifacts", "exports": "reco-exports"}
    assert names["datasets"] == {"work": "reco_work", "export": "reco_export", "metrics": "reco_metrics"}
    assert names["metrics_table"] == "run_metrics"
    assert names["recommendations_table_prefix"] == "recommendations_"
    assert names["slack_webhook_secret_id"] == "slack-webhook-url"


def test_shared_names_are_spelled_only_in_the_names_module() -> None:
    """Other modules and the envs take these names from module.names, never as literals."""
    spelled = [
        '"reco-batch"',
        '"digdag-worker"',
        '"digdag-server"',
        '"reco_work"',
        '"reco_export"',
        '"reco_metrics"',
        '"slack-webhook-url"',
        '"reco.io/node-class"',
        '"reco.io/highmem"',
        '"nvidia.com/gpu"',
    ]
    problems = []
    for path in sorted((REPO_ROOT / "terraform").rglob("*.tf")):
        if path.parent.name == "names":
            continue
        text = path.read_text()
        problems += [f"{path.relative_to(REPO_ROOT)}: {s}" for s in spelled if s in text]
    assert not problems, "shared names spelled outside terraform/modules/names:\n" + "\n".join(problems)


# --- k8s/base cross-check ---------------------------------------------------------------------------------


def _k8s_documents(base: Path = K8S_BASE) -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    if not base.is_dir():
        return docs
    for path in sorted([*base.rglob("*.yaml"), *base.rglob("*.yml")]):
        try:
            loaded = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError as exc:  # a broken manifest is the k8s tests' business, but say so here too
            pytest.fail(f"{path}: invalid YAML: {exc}")
        docs += [(path, d) for d in loaded if isinstance(d, dict)]
    return docs


def _kustomize_namespace(path: Path, base: Path) -> str | None:
    """Namespace set by the nearest kustomization between the manifest and k8s/base."""
    directory = path.parent
    while True:
        for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
            candidate = directory / name
            if candidate.is_file():
                data = yaml.safe_load(candidate.read_text()) or {}
                if data.get("namespace"):
                    return data["namespace"]
        if directory == base or base not in directory.parents:
            return None
        directory = directory.parent


def _annotated_service_accounts(base: Path = K8S_BASE) -> list[dict[str, Any]]:
    found = []
    for path, doc in _k8s_documents(base):
        if doc.get("kind") != "ServiceAccount":
            continue
        metadata = doc.get("metadata") or {}
        gsa = (metadata.get("annotations") or {}).get(WI_ANNOTATION)
        if not gsa:
            continue
        found.append(
            {
                "file": str(path.relative_to(base.parent.parent)),
                "name": metadata.get("name"),
                "namespace": metadata.get("namespace") or _kustomize_namespace(path, base),
                "gsa": gsa,
            }
        )
    return found


def _workload_identity_problems(accounts: list[dict[str, Any]]) -> list[str]:
    bindings = {
        (wi["namespace"], wi["ksa"]): wi["gsa_account_id"]
        for wi in names_locals()["workload_identities"].values()
    }
    by_name = {ksa: (ns, gsa) for (ns, ksa), gsa in bindings.items()}
    problems = []
    for sa in accounts:
        local_part, _, domain = sa["gsa"].partition("@")
        if not domain.endswith(".iam.gserviceaccount.com"):
            problems.append(f"{sa['file']}: {sa['name']}: annotation {sa['gsa']!r} is not a GSA email")
        if sa["namespace"] is None:
            # Namespace set only by an overlay: match on the KSA name alone.
            if sa["name"] not in by_name:
                problems.append(
                    f"{sa['file']}: KSA {sa['name']} has no Workload Identity binding in Terraform"
                )
                continue
            expected = by_name[sa["name"]][1]
        else:
            key = (sa["namespace"], sa["name"])
            if key not in bindings:
                problems.append(
                    f"{sa['file']}: KSA {key[0]}/{key[1]} has no Workload Identity binding in Terraform"
                )
                continue
            expected = bindings[key]
        if local_part != expected:
            problems.append(
                f"{sa['file']}: KSA {sa['name']} annotated with GSA {local_part!r}, Terraform binds {expected!r}"
            )
    return problems


def test_workload_identity_names_match_k8s_base() -> None:
    accounts = _annotated_service_accounts()
    if not accounts:
        pytest.skip(
            f"no ServiceAccount with an {WI_ANNOTATION} annotation under k8s/base yet "
            "(the manifests are written separately); nothing to cross-check"
        )
    problems = _workload_identity_problems(accounts)
    assert not problems, "k8s/base and terraform/modules/names disagree:\n" + "\n".join(problems)


def _write_sa(path: Path, name: str, gsa: str, namespace: str | None = None) -> None:
    metadata: dict[str, Any] = {"name": name, "annotations": {WI_ANNOTATION: gsa}}
    if namespace:
        metadata["namespace"] = namespace
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata}))


def test_cross_check_accepts_matching_manifests(tmp_path: Path) -> None:
    base = tmp_path / "base"
    _write_sa(
        base / "batch" / "sa.yaml",
        "reco-batch",
        "reco-batch@PROJECT_ID.iam.gserviceaccount.com",
        "reco-batch",
    )
    _write_sa(
        base / "digdag" / "sa.yaml", "digdag-worker", "digdag-worker@PROJECT_ID.iam.gserviceaccount.com"
    )
    (base / "digdag" / "kustomization.yaml").write_text("namespace: digdag\nresources: [sa.yaml]\n")
    accounts = _annotated_service_accounts(base)
    assert {(a["namespace"], a["name"]) for a in accounts} == {
        ("reco-batch", "reco-batch"),
        ("digdag", "digdag-worker"),
    }
    assert _workload_identity_problems(accounts) == []


def test_cross_check_rejects_mismatches(tmp_path: Path) -> None:
    base = tmp_path / "base"
    _write_sa(base / "a.yaml", "reco-batch", "reco-jobs@PROJECT_ID.iam.gserviceaccount.com", "reco-batch")
    _write_sa(
        base / "b.yaml", "digdag-worker", "digdag-worker@PROJECT_ID.iam.gserviceaccount.com", "reco-batch"
    )
    _write_sa(base / "c.yaml", "digdag-server", "digdag-server@example.com", "digdag")
    problems = _workload_identity_problems(_annotated_service_accounts(base))
    assert any("reco-jobs" in p for p in problems), problems
    assert any("reco-batch/digdag-worker has no Workload Identity binding" in p for p in problems), problems
    assert any("not a GSA email" in p for p in problems), problems
    assert len(problems) == 3


def _pod_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    specs = []
    stack: list[Any] = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "containers" in node and isinstance(node["containers"], list):
                specs.append(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return specs


def test_node_selectors_and_tolerations_match_node_pools() -> None:
    names = names_locals()
    label = names["node_class_label"]
    classes = set(names["node_classes"].values())
    taints = {t["key"]: t for t in (names["highmem_taint"], names["gpu_taint"])}
    checked = 0
    problems = []
    # the Job templates get their placement from the class patches (k8s/base/batch/classes/), so the rendered
    # base is checked too, not only the files
    rendered = [(K8S_BASE / "(rendered)", doc) for doc in render_overlay(str(K8S_BASE))]
    for path, doc in [*_k8s_documents(), *rendered]:
        for spec in _pod_specs(doc):
            selector = spec.get("nodeSelector") or {}
            if label in selector:
                checked += 1
                if selector[label] not in classes:
                    problems.append(f"{path}: nodeSelector {label}={selector[label]} matches no node pool")
            for toleration in spec.get("tolerations") or []:
                taint = taints.get(toleration.get("key"))
                if taint is None:
                    continue
                checked += 1
                if toleration.get("effect") not in (None, "NoSchedule"):
                    problems.append(f"{path}: toleration {toleration} has the wrong effect")
                if (
                    toleration.get("operator", "Equal") == "Equal"
                    and toleration.get("value") != taint["value"]
                ):
                    problems.append(
                        f"{path}: toleration {toleration} does not match taint value {taint['value']!r}"
                    )
    if not checked:
        pytest.skip(
            "no nodeSelector on reco.io/node-class nor tolerations of the batch taints under k8s/base yet"
        )
    assert not problems, "\n".join(problems)


GPU_ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"  # set by GKE on the nodes of a GPU pool


def test_gpu_jobs_ask_for_the_gpu_pools_accelerator() -> None:
    """The gpu class selects the accelerator type the GPU pool of every environment has (settings.gpu_type)."""
    names = names_locals()
    gpu_types = {load_settings(env)["gpu_type"] for env in ENVS}
    assert len(gpu_types) == 1, (
        f"GPU pools differ per environment ({gpu_types}): patch the gpu class per overlay"
    )
    [gpu_type] = gpu_types
    jobs = [
        j
        for j in job_templates(render_overlay(str(K8S_BASE)))
        if j["metadata"]["labels"]["reco.io/resource-class"] == names["node_classes"]["gpu"]
    ]
    assert len(jobs) == 2  # plain and sharded
    for job in jobs:
        pod = job["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == {
            names["node_class_label"]: names["node_classes"]["gpu"],
            GPU_ACCELERATOR_LABEL: gpu_type,
        }
        gpu = names["gpu_taint"]
        assert {"key": gpu["key"], "operator": "Equal", "value": gpu["value"], "effect": "NoSchedule"} in pod[
            "tolerations"
        ]
        resources = pod["containers"][0]["resources"]
        assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == "1"
