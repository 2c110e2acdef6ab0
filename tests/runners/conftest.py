from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_kube import FakeKube  # noqa: E402

from batch.runners import manifests  # noqa: E402
from batch.runners.base import StepRun  # noqa: E402


@pytest.fixture
def fake():
    server = FakeKube().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def dev_docs():
    return manifests.render_overlay("k8s/overlays/dev")


@pytest.fixture
def build(dev_docs):
    def _build(run: StepRun, namespace: str = "reco-batch"):
        return manifests.build_job(dev_docs, run, namespace)

    return _build
