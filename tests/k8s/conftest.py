from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from k8s_helpers import OVERLAYS, built_jobs  # noqa: E402

from batch.runners import manifests  # noqa: E402


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    """Every overlay, rendered once: {env: documents}."""
    return {env: manifests.render_overlay(f"k8s/overlays/{env}") for env in OVERLAYS}


@pytest.fixture(scope="session")
def rendered_dir(rendered, tmp_path_factory) -> Path:
    """The rendered overlays as files, one per environment, for the command-line validators; with them the Jobs
    `reco submit` builds from them for every resource class, plain and sharded (checkov scans those too)."""
    out = tmp_path_factory.mktemp("rendered")
    for env, docs in rendered.items():
        (out / f"{env}.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
        (out / f"{env}-jobs.yaml").write_text(yaml.safe_dump_all(built_jobs(docs, env), sort_keys=False))
    return out
