"""What the rendered manifests must say: pod security, Job retry policy, placement, RBAC, config, images."""

from __future__ import annotations

import re

import pytest
import yaml
from k8s_helpers import OVERLAYS, PROJECT_ROOT, by_kind, class_dirs, named, pod_specs

import batch.steps  # noqa: F401
from batch.config import load_environment
from batch.graph import GRAPH
from batch.runners.retry import DETERMINISTIC_EXIT_CODES


def all_pods(docs):
    for doc in docs:
        for spec in pod_specs(doc):
            yield doc, spec


def containers(spec):
    return [*(spec.get("initContainers") or []), *spec["containers"]]


@pytest.mark.parametrize("env", OVERLAYS)
def test_every_pod_is_locked_down(rendered, env):
    checked = 0
    for doc, spec in all_pods(rendered[env]):
        where = f"{env} {doc['kind']}/{doc['metadata']['name']}"
        psc = spec.get("securityContext") or {}
        assert psc.get("runAsNonRoot") is True, where
        assert psc.get("seccompProfile") == {"type": "RuntimeDefault"}, where
        mounts_tmp = False
        for c in containers(spec):
            sc = c.get("securityContext") or {}
            assert sc.get("allowPrivilegeEscalation") is False, f"{where} {c['name']}"
            assert sc.get("readOnlyRootFilesystem") is True, f"{where} {c['name']}"
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{where} {c['name']}"
            res = c.get("resources") or {}
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(res.get(kind) or {}), f"{where} {c['name']} {kind}"
            mounts_tmp |= any(m["mountPath"] == "/tmp" for m in c.get("volumeMounts") or [])
        tmp_volumes = [v for v in spec.get("volumes") or [] if v["name"] == "tmp"]
        assert mounts_tmp and tmp_volumes and "emptyDir" in tmp_volumes[0], (
            f"{where}: /tmp is not an emptyDir"
        )
        checked += 1
    # a plain and a sharded Job template per class, the Digdag server and worker
    assert checked == 2 * len(class_dirs()) + 2 + 1 + 1  # step templates, Digdag pods, tune worker, dashboard


@pytest.mark.parametrize("env", OVERLAYS)
def test_job_templates_retry_sensibly(rendered, env):
    jobs = by_kind(rendered[env], "Job")
    assert {j["metadata"]["name"] for j in jobs} == {
        f"reco-step-{cls}{shape}" for cls in class_dirs() for shape in ("", "-sharded")
    } | {
        "reco-tune-worker",  # k8s/base/tuning: the `reco tune` workers (docs/tuning.md)
    }
    for job in jobs:
        spec = job["spec"]
        name = job["metadata"]["name"]
        assert job["metadata"]["labels"]["reco.io/template"] == "true"
        assert spec["suspend"] is True, f"{name}: a template applied by mistake must not run"
        assert spec["activeDeadlineSeconds"] > 0 and spec["ttlSecondsAfterFinished"] > 0
        assert spec["backoffLimit"] >= 1
        assert spec["template"]["spec"]["restartPolicy"] == "Never"
        rules = spec["podFailurePolicy"]["rules"]
        indexed = spec.get("completionMode") == "Indexed"
        deterministic = [r for r in rules if "onExitCodes" in r]
        assert len(deterministic) == 1
        assert deterministic[0]["action"] == ("FailIndex" if indexed else "FailJob")
        assert deterministic[0]["onExitCodes"]["operator"] == "In"
        assert set(deterministic[0]["onExitCodes"]["values"]) == set(DETERMINISTIC_EXIT_CODES)
        assert deterministic[0]["onExitCodes"]["containerName"] == "reco"
        ignore = [r for r in rules if r["action"] == "Ignore"]
        assert ignore and ignore[0]["onPodConditions"] == [{"type": "DisruptionTarget", "status": "True"}]
        if indexed:
            assert spec["backoffLimitPerIndex"] >= 1 and spec["maxFailedIndexes"] >= 0
            assert spec["parallelism"] >= 1
        c = spec["template"]["spec"]["containers"][0]
        assert c["name"] == "reco" and c["command"] == ["reco"]
        assert c["args"][0] == ("tune" if name == "reco-tune-worker" else "step")


PLACEMENT = {  # class: (node pool's reco.io/node-class, the pool's taint, extra nodeSelector)
    "standard": ("standard", set(), {}),
    "compute": ("standard", set(), {}),
    "highmem": ("highmem", {("reco.io/highmem", "true")}, {}),
    "gpu": ("gpu", {("nvidia.com/gpu", "present")}, {"cloud.google.com/gke-accelerator": "nvidia-l4"}),
    "tuning": ("standard", set(), {}),  # the `reco tune` workers
}


@pytest.mark.parametrize("env", OVERLAYS)
def test_node_pools_and_tolerations_per_class(rendered, env):
    for job in by_kind(rendered[env], "Job"):
        pod = job["spec"]["template"]["spec"]
        node_class, taints, selector = PLACEMENT[job["metadata"]["labels"]["reco.io/resource-class"]]
        assert pod["nodeSelector"] == {"reco.io/node-class": node_class, **selector}
        tolerated = {(t["key"], t.get("value")) for t in pod["tolerations"] if t["effect"] == "NoSchedule"}
        assert tolerated == {("cloud.google.com/gke-spot", "true")} | taints
        if node_class == "gpu":
            assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_every_step_has_a_template_of_every_class(rendered):
    from batch.runners.manifests import resource_classes, select_template

    for env in OVERLAYS:
        assert resource_classes(rendered[env]) == sorted(class_dirs())
        for step in GRAPH.steps():
            for cls in class_dirs():
                select_template(rendered[env], cls, step.sharded)


@pytest.mark.parametrize("env", OVERLAYS)
def test_rbac_lets_the_digdag_worker_run_jobs_in_the_batch_namespace_only(rendered, env):
    docs = rendered[env]
    assert not by_kind(docs, "ClusterRole") and not by_kind(docs, "ClusterRoleBinding")
    role = named(docs, "Role", "reco-job-submitter")
    assert role["metadata"]["namespace"] == "reco-batch"
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
    assert rules == {
        (("batch",), ("jobs",)): {"create", "get", "list", "watch", "delete"},
        (("",), ("pods", "pods/log")): {"get", "list", "watch"},
    }
    binding = named(docs, "RoleBinding", "digdag-worker-submits-jobs")
    assert binding["metadata"]["namespace"] == "reco-batch"
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "reco-job-submitter",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "digdag-worker", "namespace": "digdag"}]


@pytest.mark.parametrize("env", OVERLAYS)
def test_workload_identity_service_accounts(rendered, env):
    sas = {
        (d["metadata"]["namespace"], d["metadata"]["name"]): d
        for d in by_kind(rendered[env], "ServiceAccount")
    }
    assert set(sas) == {
        ("reco-batch", "reco-batch"),
        ("digdag", "digdag-worker"),
        ("digdag", "digdag-server"),
        ("digdag", "reco-dashboard"),
    }
    for (_, name), sa in sas.items():
        gsa = sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
        assert re.fullmatch(rf"{name}@[a-zA-Z0-9_-]+\.iam\.gserviceaccount\.com", gsa)
    for job in by_kind(rendered[env], "Job"):
        assert job["spec"]["template"]["spec"]["serviceAccountName"] == "reco-batch"


def test_overlay_deployment_facts_reach_the_service_accounts(tmp_path):
    """deployment.env of an overlay is the one place the project goes: annotations and ConfigMaps follow it."""
    import shutil

    from batch.runners.manifests import render_overlay

    shutil.copytree(PROJECT_ROOT / "k8s", tmp_path / "k8s")
    shutil.copytree(PROJECT_ROOT / "config", tmp_path / "config")
    env_file = tmp_path / "k8s/overlays/staging/deployment.env"
    env_file.write_text(env_file.read_text().replace("PROJECT_ID", "acme-reco-stg"))
    docs = render_overlay(str(tmp_path / "k8s/overlays/staging"))
    gsas = {
        d["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
        for d in by_kind(docs, "ServiceAccount")
    }
    assert gsas == {
        f"{n}@acme-reco-stg.iam.gserviceaccount.com"
        for n in ("reco-batch", "digdag-worker", "digdag-server", "reco-dashboard")
    }
    cm = named(docs, "ConfigMap", "reco-deployment")
    assert cm["data"]["project_id"] == "acme-reco-stg"


def test_no_project_id_in_base():
    for path in (PROJECT_ROOT / "k8s/base").rglob("*"):
        if path.is_file():
            text = path.read_text()
            for gsa in re.findall(r"@([A-Za-z0-9_-]+)\.iam", text):
                assert gsa == "PROJECT_ID", f"{path}: {gsa}"


def test_pipeline_config_configmaps_carry_every_config_file(rendered):
    pipelines = sorted(p.name for p in (PROJECT_ROOT / "config/pipelines").glob("*.yaml"))
    for env in OVERLAYS:
        config = named(rendered[env], "ConfigMap", "reco-config")
        assert config["data"] == {
            "environments.yaml": (PROJECT_ROOT / "config/environments.yaml").read_text()
        }
        cm = named(rendered[env], "ConfigMap", "reco-pipelines")
        assert sorted(cm["data"]) == pipelines, (
            "config/pipelines/*.yaml and configMapGenerator reco-pipelines in k8s/base/batch/kustomization.yaml "
            f"differ: missing {sorted(set(pipelines) - set(cm['data']))}, extra {sorted(set(cm['data']) - set(pipelines))}"
        )
        for name in pipelines:
            assert cm["data"][name] == (PROJECT_ROOT / "config/pipelines" / name).read_text()
        # the SQL a pipeline ships for its source (source.events_sql / items_sql) travels the same way
        sql_files = sorted(p.name for p in (PROJECT_ROOT / "config/sql").glob("*.sql"))
        sql = named(rendered[env], "ConfigMap", "reco-sql")
        assert sorted(sql["data"]) == sql_files, (
            "config/sql/*.sql and configMapGenerator reco-sql in k8s/base/batch/kustomization.yaml differ: "
            f"missing {sorted(set(sql_files) - set(sql['data']))}, extra {sorted(set(sql['data']) - set(sql_files))}"
        )
        for name in sql_files:
            assert sql["data"][name] == (PROJECT_ROOT / "config/sql" / name).read_text()


@pytest.mark.parametrize("env", OVERLAYS)
def test_jobs_mount_the_config_directory_without_a_per_pipeline_list(rendered, env):
    """RECO_CONFIG_DIR holds environments.yaml and pipelines/: every key of reco-pipelines, no items list."""
    names = {
        base: named(rendered[env], "ConfigMap", base)["metadata"]["name"]
        for base in ("reco-config", "reco-pipelines")
    }
    for job in by_kind(rendered[env], "Job"):
        pod = job["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["config"]["configMap"] == {"name": names["reco-config"]}
        # no items: every key of the map is a file, so a new pipeline needs no change in the template
        assert volumes["pipelines"]["configMap"] == {"name": names["reco-pipelines"]}
        container = pod["containers"][0]
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        env_vars = {e["name"]: e.get("value") for e in container["env"]}
        config_dir = env_vars["RECO_CONFIG_DIR"]
        assert config_dir == "/etc/reco/config"
        assert mounts["config"] == {
            "name": "config",
            "mountPath": f"{config_dir}/environments.yaml",
            "subPath": "environments.yaml",
            "readOnly": True,
        }
        assert mounts["pipelines"] == {
            "name": "pipelines",
            "mountPath": f"{config_dir}/pipelines",
            "readOnly": True,
        }
        sql_map = named(rendered[env], "ConfigMap", "reco-sql")["metadata"]["name"]
        assert volumes["sql"]["configMap"] == {"name": sql_map}
        assert mounts["sql"] == {"name": "sql", "mountPath": f"{config_dir}/sql", "readOnly": True}


@pytest.mark.parametrize("env", OVERLAYS)
def test_overlays_agree_with_the_environment_config(rendered, env, monkeypatch):
    monkeypatch.setenv("GCP_PROJECT", "p")
    cfg = load_environment(env)
    assert cfg.kubernetes.overlay == f"k8s/overlays/{env}"
    for job in by_kind(rendered[env], "Job"):
        assert job["metadata"]["namespace"] == cfg.kubernetes.namespace
    server = named(rendered[env], "Deployment", "digdag-server")
    scheduler_off = "--disable-scheduler" in server["spec"]["template"]["spec"]["containers"][0]["args"]
    assert scheduler_off == (not cfg.schedule_enabled)


def images(docs):
    return {c["image"] for _, spec in all_pods(docs) for c in containers(spec)}


def test_prod_pins_images_by_digest_and_others_by_tag(rendered):
    ours = re.compile(r"^.+/reco/(reco-batch|digdag-worker)")
    for env in OVERLAYS:
        for image in images(rendered[env]):
            if not ours.match(image):
                assert re.search(r":\d+\.\d+\.\d+$|@sha256:[0-9a-f]{64}$", image), (
                    image
                )  # third party: pinned
                continue
            if env == "prod":
                assert re.search(r"@sha256:[0-9a-f]{64}$", image), image
            else:
                assert re.search(r":[A-Za-z0-9_.-]+$", image) and not image.endswith(":latest"), image


def template(docs, cls, sharded=False):
    from batch.runners.manifests import select_template

    return select_template(docs, cls, sharded)


def test_per_environment_sizes(rendered):
    def parallelism(env):
        return {template(rendered[env], cls, True)["spec"]["parallelism"] for cls in class_dirs()}

    def memory(env):
        return template(rendered[env], "highmem")["spec"]["template"]["spec"]["containers"][0]["resources"][
            "limits"
        ]["memory"]

    def deadline(env):
        return template(rendered[env], "highmem")["spec"]["activeDeadlineSeconds"]

    assert (parallelism("dev"), parallelism("staging"), parallelism("prod")) == ({2}, {4}, {8})
    assert memory("dev") == "16Gi" and memory("prod") == "56Gi"
    assert (deadline("staging"), deadline("prod")) == (14400, 21600)
    dev_standard = template(rendered["dev"], "standard")["spec"]["template"]["spec"]["containers"][0][
        "resources"
    ]
    assert dev_standard["limits"] == {"cpu": "1", "memory": "2Gi", "ephemeral-storage": "4Gi"}


def test_overlays_are_small_patches_not_copies():
    for env in OVERLAYS:
        files = [p for p in (PROJECT_ROOT / "k8s/overlays" / env).iterdir() if p.is_file()]
        assert {p.name for p in files} <= {"kustomization.yaml", "deployment.env"}
        k = yaml.safe_load((PROJECT_ROOT / "k8s/overlays" / env / "kustomization.yaml").read_text())
        assert k["resources"] == ["../../base"]


def test_network_policies_cover_every_pod(rendered):
    for env in OVERLAYS:
        docs = rendered[env]
        policies = by_kind(docs, "NetworkPolicy")
        for doc, _spec in all_pods(docs):
            labels = doc["spec"]["template"]["metadata"]["labels"]
            ns = doc["metadata"]["namespace"]
            assert any(
                p["metadata"]["namespace"] == ns
                and all(labels.get(k) == v for k, v in p["spec"]["podSelector"]["matchLabels"].items())
                for p in policies
            ), f"{env} {doc['metadata']['name']}"
