from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_kube import FakeKube  # noqa: E402

from batch.config import EnvironmentConfig, KubernetesConfig  # noqa: E402
from batch.runners import manifests  # noqa: E402
from batch.runners.base import StepRun  # noqa: E402


@pytest.fixture
def fake():
    server = FakeKube().start()
    yield server
    server.stop()


def gke_env(timeout_s: int = 900) -> EnvironmentConfig:
    return EnvironmentConfig(name="dev", runner="gke",
                             kubernetes=KubernetesConfig(overlay="k8s/overlays/dev", namespace="reco-batch",
                                                         unschedulable_timeout_s=timeout_s))


def step_run(step: str = "aggregate", *, env: str = "dev", attempt: str = "42", shard_count: int = 1,
             resource_class: str = "standard") -> StepRun:
    sharded = step in ("candidates", "related")
    return StepRun(pipeline="demo", step=step, session_date="2026-11-21", env=env, attempt=attempt,
                   resource_class=resource_class, sharded=sharded, shard_count=shard_count if sharded else 1)


@pytest.fixture(scope="session")
def dev_docs():
    return manifests.render_overlay("k8s/overlays/dev")


@pytest.fixture
def build(dev_docs):
    def _build(run: StepRun, namespace: str = "reco-batch"):
        return manifests.build_job(dev_docs, run, namespace)

    return _build
