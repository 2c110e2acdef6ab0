"""`terraform fmt -check -recursive terraform` (terraform init/validate/plan cannot run here: no provider)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = shutil.which("terraform")

pytestmark = pytest.mark.skipif(
    TERRAFORM is None,
    reason="terraform not on PATH: `terraform fmt -check -recursive terraform` was not run",
)


def _fmt_check(target: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}
    return subprocess.run(
        [TERRAFORM, "fmt", "-check", "-recursive", "-diff", str(target)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_terraform_tree_is_formatted() -> None:
    assert (REPO_ROOT / "terraform").is_dir()
    result = _fmt_check(REPO_ROOT / "terraform")
    assert result.returncode == 0, (
        "terraform fmt -check found unformatted files (run `terraform fmt -recursive terraform`):\n"
        + result.stdout
        + result.stderr
    )


def test_fmt_check_catches_unformatted_file(tmp_path: Path) -> None:
    """The check above is able to fail: a badly aligned file is reported."""
    (tmp_path / "bad.tf").write_text('variable "x" {\ntype = string\n    description="x"\n}\n')
    result = _fmt_check(tmp_path)
    assert result.returncode != 0
    assert "bad.tf" in result.stdout
