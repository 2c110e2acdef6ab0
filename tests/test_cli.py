"""The `reco` command as people type it: exit codes, one-line errors, output formats."""

import csv
import io
import json
import subprocess
import sys

import pytest

from batch.cli import main

SMALL = ["--set", "model.params.iterations=2", "--set", "model.params.factors=8"]


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_run_then_show(small_data, capsys):
    code, out, err = _run(capsys, "run", "--pipeline", "demo", "--date", "2026-11-21", *SMALL)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["published"]["this_date_published"]
    # the run records its overrides
    assert summary["overrides"] == {"model.params.iterations": "2", "model.params.factors": "8"}

    code, out, _ = _run(
        capsys, "show", "recommendations", "--pipeline", "demo", "--date", "2026-11-21", "--format", "csv"
    )
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and list(rows[0]) == [
        "user_id",
        "item_id",
        "rank",
        "score",
        "source",
        "model_version",
        "dt",
    ]
    user = rows[0]["user_id"]
    assert len({r["user_id"] for r in rows}) > 100  # all users without --user

    code, out, _ = _run(
        capsys,
        "show",
        "recommendations",
        "--pipeline",
        "demo",
        "--date",
        "2026-11-21",
        "--user",
        user,
        "--format",
        "jsonl",
    )
    lines = [json.loads(line) for line in out.splitlines()]
    assert {r["user_id"] for r in lines} == {user} and [r["rank"] for r in lines] == list(range(1, 51))

    code, out, _ = _run(
        capsys, "show", "recommendations", "--pipeline", "demo", "--date", "2026-11-21", "--user", user
    )
    assert code == 0 and "model_version" in out.splitlines()[0]

    code, out, _ = _run(capsys, "show", "summary", "--pipeline", "demo", "--date", "2026-11-21")
    summary = json.loads(out)
    assert {"data", "metrics", "model", "steps", "gates", "export"} <= set(summary)
    assert summary["model"]["params"]["factors"] == 8


def test_bad_override_is_one_line_naming_the_field(reco_home, capsys):
    code, _, err = _run(
        capsys, "run", "--pipeline", "demo", "--date", "2026-11-21", "--set", "aggregate.lookback_days=-1"
    )
    assert code == 65
    assert err.count("\n") == 1 and "aggregate.lookback_days" in err


def test_bad_date_and_unknown_pipeline(reco_home, capsys):
    code, _, err = _run(capsys, "step", "aggregate", "--pipeline", "demo", "--date", "21/11/2026")
    assert code == 65 and "YYYY-MM-DD" in err
    code, _, err = _run(capsys, "step", "aggregate", "--pipeline", "nope", "--date", "2026-11-21")
    assert code == 65 and "no pipeline named 'nope'" in err


def test_no_events_exits_with_bad_input(reco_home, capsys):
    _run(
        capsys,
        "data",
        "generate",
        "--pipeline",
        "demo",
        "--users",
        "50",
        "--items",
        "40",
        "--days",
        "3",
        "--end-date",
        "2026-10-01",
    )
    code, _, err = _run(capsys, "step", "aggregate", "--pipeline", "demo", "--date", "2026-11-21")
    assert code == 65 and "no usable events" in err


def test_step_reads_the_shard_from_job_completion_index(small_data, capsys, monkeypatch):
    for name in ("aggregate", "train"):
        assert _run(capsys, "step", name, "--pipeline", "demo", "--date", "2026-11-21", *SMALL)[0] == 0
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")
    code, out, _ = _run(capsys, "step", "candidates", "--pipeline", "demo", "--date", "2026-11-21", *SMALL)
    assert code == 0 and json.loads(out)["shard"] == [1, 2]


def test_import_movielens_appends_and_reports_bad_lines(reco_home, tmp_path, capsys):
    good = tmp_path / "ratings.csv"
    good.write_text("userId,movieId,rating,timestamp\n1,10,4.0,1700000000\n2,10,2.0,1700000100\n")
    for _ in range(2):
        code, out, _ = _run(capsys, "data", "import-movielens", str(good), "--pipeline", "demo")
        assert code == 0
    assert json.loads(out)["events"] == 2
    import duckdb

    con = duckdb.connect(str(reco_home / "warehouse.duckdb"), read_only=True)
    assert con.execute("SELECT COUNT(*) FROM demo_events").fetchone()[0] == 4  # appended, not replaced
    assert con.execute("SELECT COUNT(*) FROM demo_items").fetchone()[0] == 1
    con.close()
    bad = tmp_path / "bad.csv"
    bad.write_text("userId,movieId,rating,timestamp\n1,10,4.0,1700000000\n1,,4.0,1700000000\n")
    code, _, err = _run(capsys, "data", "import-movielens", str(bad), "--pipeline", "demo")
    assert code == 65 and f"{bad}:3" in err


@pytest.mark.parametrize("argv", [["run"], ["step", "nope", "--pipeline", "demo", "--date", "2026-11-21"]])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2


HEAVY = ("pandas", "duckdb", "implicit", "pyarrow", "batch.steps", "batch.graph")


@pytest.mark.parametrize(
    ("argv", "heavy_allowed"),
    [
        (["--help"], ()),
        (["--version"], ()),
        (["nosuchcommand"], ()),
        (["--log-level", "debug", "plan", "--help"], ("pandas", "implicit", "pyarrow")),
        (["step", "--help"], HEAVY),
    ],
)
def test_only_the_invoked_command_is_imported(argv, heavy_allowed):
    """`reco --help` and light commands start without importing the data stack; `reco step` does import it."""
    code = (
        "import sys\nfrom batch.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out.strip().splitlines()[-1].replace("'", '"'))
    assert set(loaded) <= set(heavy_allowed), f"reco {' '.join(argv)} imported {loaded}"
    if argv[0] == "step":
        assert "batch.steps" in loaded  # the step's command does load the graph


def test_help_lists_every_command(capsys):
    from batch.cli import COMMANDS

    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)
