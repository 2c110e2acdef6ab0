"""The import rules of the code base (docs/extending.md), read from the code itself with grimp and ruff.

- models/ imports nothing from batch/ (the zoo is usable from a notebook without the platform);
- steps never import checks, runners, Digdag code, the CLI or the execution layer, and no step imports another;
- checks never import steps;
- no import cycle anywhere;
- imports inside functions only for the heavy optional libraries listed in pyproject.toml (ruff PLC0415/TID253).
"""

from __future__ import annotations

import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("batch", "models", include_external_packages=False, cache_dir=None)


def _imports(graph, importer: str) -> set[str]:
    return graph.find_modules_directly_imported_by(importer)


def _modules(graph, package: str) -> set[str]:
    return {package} | graph.find_descendants(package)


def test_models_import_nothing_from_batch(graph):
    bad = {
        (m, i) for m in _modules(graph, "models") for i in _imports(graph, m) if i.split(".")[0] == "batch"
    }
    assert not bad, bad


FORBIDDEN_FOR_STEPS = ("batch.checks", "batch.runners", "batch.digdag", "batch.cli", "batch.execute")


def test_steps_import_no_check_runner_digdag_cli_or_sibling_step(graph):
    steps = graph.find_descendants("batch.steps")
    assert {"batch.steps.aggregate", "batch.steps.train", "batch.steps.export"} <= steps
    bad = []
    for step in steps:
        for imported in _imports(graph, step):
            if imported.startswith(FORBIDDEN_FOR_STEPS) or imported.startswith("batch.steps"):
                bad.append((step, imported))
    assert not bad, bad


def test_checks_never_import_steps(graph):
    bad = [
        (m, i)
        for m in _modules(graph, "batch.checks")
        for i in _imports(graph, m)
        if i == "batch.steps" or i.startswith("batch.steps.")
    ]
    assert not bad, bad


def test_no_import_cycles(graph):
    modules = _modules(graph, "batch") | _modules(graph, "models")
    sorter = TopologicalSorter({m: _imports(graph, m) & modules for m in modules})
    try:
        sorter.prepare()
    except CycleError as e:
        pytest.fail(f"import cycle: {' -> '.join(e.args[1])}")


def test_a_cycle_would_be_found():
    """The cycle test can fail: a graph with a cycle raises."""
    with pytest.raises(CycleError):
        TopologicalSorter({"a": {"b"}, "b": {"a"}}).prepare()


def test_imports_inside_functions_only_for_heavy_optional_libraries():
    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        pytest.skip("ruff is not installed in this environment")
    out = subprocess.run(
        [str(ruff), "check", "--select", "PLC0415,TID253", "--output-format", "concise", "batch", "models"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_lint_rule_catches_an_import_in_a_function(tmp_path):
    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        pytest.skip("ruff is not installed in this environment")
    (tmp_path / "batch").mkdir()
    bad = tmp_path / "batch" / "bad.py"
    bad.write_text("def f():\n    import json\n\n    return json\n")
    out = subprocess.run(
        [str(ruff), "check", "--config", str(ROOT / "pyproject.toml"), "--select", "PLC0415", str(bad)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1 and "PLC0415" in out.stdout
