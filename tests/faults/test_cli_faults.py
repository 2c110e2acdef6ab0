"""Faults an operator meets at the command line: exit codes, one-line errors with the next command."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from batch.cli import main
from batch.config import PROJECT_ROOT


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_fresh_reco_home_says_to_load_data(reco_home, capsys):
    code, _, err = _run(capsys, "run", "--pipeline", "demo", "--date", "2026-11-21")
    assert code == 65, err
    assert "Traceback" not in err and "CatalogException" not in err
    assert "demo_events" in err and "reco data generate --pipeline demo" in err
    assert "reco data import-movielens" in err


@pytest.mark.parametrize(
    "value, says",
    [
        ("9999-12-31", "outside the supported range"),
        ("2026-02-30", "not a calendar date"),
        ("21/11/2026", "YYYY-MM-DD"),
    ],
)
def test_bad_dates_are_bad_input_not_crashes(reco_home, capsys, value, says):
    code, _, err = _run(capsys, "run", "--pipeline", "demo", "--date", value)
    assert code == 65 and says in err and "--date" in err
    assert err.count("\n") == 1 and "Overflow" not in err


def test_log_level_any_case_and_unknown_level(reco_home, capsys):
    code, _, err = _run(capsys, "--log-level", "debug", "digdag", "check")
    assert code == 0, err
    with pytest.raises(SystemExit) as e:
        main(["--log-level", "loud", "digdag", "check"])
    assert e.value.code == 2
    assert "DEBUG" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("reco ") and out.split()[1][0].isdigit()


def test_set_of_name_is_refused(reco_home, capsys):
    code, _, err = _run(capsys, "run", "--pipeline", "demo", "--date", "2026-11-21", "--set", "name=other")
    assert code == 65 and "--set name=other" in err and "cannot be overridden" in err


def test_set_errors_name_the_set_not_the_file(reco_home, capsys):
    code, _, err = _run(
        capsys, "run", "--pipeline", "demo", "--date", "2026-11-21", "--set", "model.factors=abc"
    )
    assert code == 65
    assert "--set model.params.factors=abc" in err and "demo.yaml" not in err


@pytest.fixture
def config_copy(tmp_path, monkeypatch):
    cfg = tmp_path / "config"
    shutil.copytree(PROJECT_ROOT / "config", cfg)
    monkeypatch.setenv("RECO_CONFIG_DIR", str(cfg))
    return cfg


def test_yaml_errors_have_line_and_column(reco_home, config_copy, capsys):
    path = config_copy / "pipelines" / "demo.yaml"
    path.write_text("name: demo\nsource:\n  events_table: x\n   bad: [1\n")
    code, _, err = _run(capsys, "run", "--pipeline", "demo", "--date", "2026-11-21")
    assert code == 65 and f"{path}:4:7: not valid YAML" in err and err.count("\n") == 1


def test_digdag_check_validates_the_envs_merged_config(reco_home, config_copy, capsys):
    path = config_copy / "pipelines" / "demo.yaml"
    text = path.read_text()
    assert "    candidates: {shard_count: 8}\n" in text  # inside envs.prod
    path.write_text(text.replace("    candidates: {shard_count: 8}\n", "    candidates: {shard_cuont: 8}\n"))
    code, out, err = _run(capsys, "digdag", "check", "--env", "prod")
    assert code == 3 and "candidates.shard_cuont" in err and "--env prod" in err
    code, out, err = _run(capsys, "digdag", "check", "--env", "local")
    assert code == 0, err


def test_broken_pipe_ends_quietly(reco_home):
    """`reco ... | head`: the reader is gone before reco writes; no traceback, exit 141 (like SIGPIPE)."""
    reco = shutil.which("reco", path=str(PROJECT_ROOT / ".venv" / "bin")) or sys.executable
    argv = [reco] if reco != sys.executable else [sys.executable, "-m", "batch.cli"]
    argv += ["data", "generate", "--pipeline", "demo", "--users", "50", "--items", "40", "--days", "3"]
    r, w = __import__("os").pipe()
    __import__("os").close(r)  # nobody will read
    proc = subprocess.run(argv, stdout=w, stderr=subprocess.PIPE, text=True, timeout=120)
    __import__("os").close(w)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr
    assert proc.returncode == 141
