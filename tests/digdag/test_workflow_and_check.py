"""Parsing the subset (and refusing what is outside it), and `reco digdag check` over good and broken workflows."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

import batch.steps  # noqa: F401
from batch.cli import build_parser
from batch.config import PROJECT_ROOT
from batch.digdag.check import check_paths, reco_commands
from batch.digdag.workflow import WorkflowError, load_workflow, parse_schedule
from batch.graph import GRAPH


def test_project_workflows_pass_check():
    report = check_paths([PROJECT_ROOT / "digdag"], parser=build_parser())
    assert report.ok, "\n".join(map(str, report.problems))
    assert any(p.endswith("demo.dig") for p in report.workflows)
    assert report.commands_checked >= 8  # five steps, failure, success, sla


def test_cli_check_passes_on_the_repo(capsys):
    from batch.cli import main

    assert main(["digdag", "check"]) == 0
    assert "ok" in capsys.readouterr().out


def test_demo_workflow_shape():
    wf = load_workflow(PROJECT_ROOT / "digdag" / "demo.dig")
    assert wf.timezone == "Asia/Tokyo"
    assert wf.schedule is not None and wf.schedule.kind == "daily"
    assert wf.sla is not None and wf.sla.task is not None
    assert wf.root.export["pipeline"] == "demo"
    called = wf.root.children[0].children[0]
    steps = [c.name for c in called.children]
    assert steps == [
        "+aggregate",
        "+train",
        "+index",
        "+candidates_and_related",
        "+export",
        "+publish",
        "+report",
    ]
    par = called.children[3]
    assert par.parallel and [c.name for c in par.children] == ["+candidates", "+related"]
    leaves = [t for t in wf.root.walk() if t.operator == "sh" and "reco submit" in t.command]
    # no Digdag retry on a step: reco submit retries only what can succeed again (batch/runners/retry.py)
    assert len(leaves) == len(GRAPH.steps()) and all(t.retry is None for t in leaves)
    assert all(t.retry is None for t in wf.root.walk() if t.is_group)
    assert called.error is not None and "reco notify failure" in called.error.command
    for path in wf.files:  # secrets only by reference
        assert "hooks.slack.com" not in path.read_text()


@pytest.mark.parametrize(
    "text, fragment, hint",
    [
        ("+x:\n  echo>: ${moment(session_time).format('YYYY')}\n", "JavaScript expression", "session_date"),
        ("+x:\n  py>: tasks.run\n", "operator py> is not supported", "reco"),
        ("+x:\n  frobnicate>: now\n", "operator frobnicate> is unknown", "sh>"),
        ("+x:\n  sh>: echo ${secret:slack.webhook_url}\n", "only allowed in _env", "_env"),
        ("+x:\n  _background: true\n  echo>: hi\n", "_background is not supported", "_parallel"),
        ("+x:\n  !include : 'other.dig'\n", "not supported", "call>"),
        ("+x:\n  _retry: {limit: -1}\n  echo>: hi\n", "_retry.limit", "_retry"),
        ("+x:\n  _retry: {limit: 2, interval_type: linear}\n  echo>: hi\n", "interval_type", None),
        ("+x:\n  _parallel: {limit: 0}\n  +a:\n    echo>: a\n", "_parallel", None),
        ("schedule:\n  daily>: 25:00:00\n+x:\n  echo>: hi\n", "daily>", "daily>: 07:00:00"),
        ("schedule:\n  cron>: '0 7 * *'\n+x:\n  echo>: hi\n", "5 fields", None),
        ("schedule:\n  weekly>: Funday,07:00:00\n+x:\n  echo>: hi\n", "weekly>", None),
        (
            "schedule:\n  daily>: 07:00:00\n  skip_on_overtim: true\n+x:\n  echo>: hi\n",
            "unknown option",
            None,
        ),
        ("sla:\n  time: 25:99\n  +a:\n    echo>: late\n+x:\n  echo>: hi\n", "sla: time", None),
        ("sla:\n  duration: 01:00\n+x:\n  echo>: hi\n", "sla does nothing", None),
        ("+x:\n  +y:\n    echo>: a\n  +y:\n    echo>: b\n", "duplicate key", None),
        ("+x:\n  call>: missing.dig\n", "missing.dig not found", "relative"),
        ("+x:\n  echo>: a\n  sh>: b\n", "one operator", None),
        ("+x:\n  color: red\n  +y:\n    echo>: a\n", "not visible to its tasks", "_export"),
        ("timezone: Mars/Olympus\n+x:\n  echo>: hi\n", "unknown time zone", None),
    ],
)
def test_outside_the_subset_is_rejected_with_file_task_and_hint(write_dig, text, fragment, hint):
    wf = write_dig("bad.dig", text)
    with pytest.raises(WorkflowError) as e:
        load_workflow(wf)
    message = str(e.value)
    assert fragment in message
    assert "bad.dig" in message
    if hint:
        assert hint in (e.value.hint or "")


def test_error_names_the_task(write_dig):
    wf = write_dig("named.dig", "+outer:\n  +inner:\n    if>: true\n")
    with pytest.raises(WorkflowError) as e:
        load_workflow(wf)
    assert e.value.task == "+named+outer+inner"


def test_times_stay_strings_not_base60_integers(write_dig):
    wf = load_workflow(write_dig("t.dig", "schedule:\n  daily>: 10:30:00\n+x:\n  echo>: 10:30\n"))
    assert wf.schedule.delay.total_seconds() == 10 * 3600 + 30 * 60
    assert wf.root.children[0].command == "10:30"


def test_call_cycle_is_rejected(write_dig):
    write_dig("b.dig", "+back:\n  call>: a.dig\n")
    a = write_dig("a.dig", "+go:\n  call>: b.dig\n")
    with pytest.raises(WorkflowError, match="calls itself"):
        load_workflow(a)


@pytest.mark.parametrize(
    "kind, spec, t, last, nxt",
    [
        ("daily", "07:00:00", "2026-03-01T00:00", "2026-02-28T00:00", "2026-03-02T00:00"),
        ("hourly", "30:00", "2026-11-30T00:00", "2026-11-29T23:00", "2026-11-30T01:00"),
        ("weekly", "Sun,09:00:00", "2026-11-29T00:00", "2026-11-22T00:00", "2026-12-06T00:00"),
        ("monthly", "1,09:00:00", "2026-12-01T00:00", "2026-11-01T00:00", "2027-01-01T00:00"),
        ("minutes_interval", "15", "2026-11-30T00:00", "2026-11-29T23:45", "2026-11-30T00:15"),
        ("cron", "0 7 * * 1-5", "2026-11-30T07:00", "2026-11-27T07:00", "2026-12-01T07:00"),
    ],
)
def test_schedule_last_and_next_sessions(kind, spec, t, last, nxt):
    tz = ZoneInfo("Asia/Tokyo")
    s = parse_schedule({f"{kind}>": spec}, file="x.dig")
    at = datetime.fromisoformat(t).replace(tzinfo=tz)
    assert s.last_session(at) == datetime.fromisoformat(last).replace(tzinfo=tz)
    assert s.next_session(at) == datetime.fromisoformat(nxt).replace(tzinfo=tz)


def test_reco_commands_are_found_in_shell_lines():
    cmds = reco_commands("set -e; reco submit train --date 1 && FOO=1 reco notify sla | tee x; echo reco")
    assert cmds == [["submit", "train", "--date", "1"], ["notify", "sla"]]


# -- check on broken workflows ---------------------------------------------------------------------------------


def _problems(write_dig, files: dict[str, str]) -> list[str]:
    for name, text in files.items():
        write_dig(name, text)
    return [str(p) for p in check_paths([write_dig.dir], parser=build_parser()).problems]


def test_check_catches_a_missing_pipeline(write_dig):
    problems = _problems(
        write_dig,
        {
            "tasks/daily.dig": (PROJECT_ROOT / "digdag" / "tasks" / "daily.dig").read_text(),
            "newreco.dig": "timezone: Asia/Tokyo\n_export:\n  pipeline: newreco\n+daily:\n  call>: tasks/daily.dig\n",
        },
    )
    assert problems
    assert all("no pipeline named 'newreco'" in p for p in problems)
    assert any("newreco.dig" in str(p) or "daily.dig" in p for p in problems)
    assert "config/pipelines/newreco.yaml" in problems[0]


def test_check_catches_bad_reco_arguments(write_dig):
    problems = _problems(
        write_dig,
        {
            "w.dig": """
_export:
  pipeline: demo
+a:
  sh>: reco submit aggregat --pipeline ${pipeline} --date ${session_date} --env ${env}
+b:
  sh>: reco submit train --pipeline ${pipeline} --env ${env}
+c:
  sh>: reco submit train --pipeline ${pipeline} --date ${session_date} --env moon
+d:
  sh>: reco notify failure --pipeline ${pipeline} --date ${session_date} --colour red
"""
        },
    )
    in_tasks = [p for p in problems if "task +w+" in p]
    assert len(in_tasks) == 4, problems
    assert "+w+a" in in_tasks[0] and "unknown step 'aggregat'" in in_tasks[0] and "aggregate" in in_tasks[0]
    assert "+w+b" in in_tasks[1] and "--date" in in_tasks[1]
    assert "+w+c" in in_tasks[2] and "'moon'" in in_tasks[2]
    assert "+w+d" in in_tasks[3] and "--colour" in in_tasks[3]


DAILY = (PROJECT_ROOT / "digdag" / "tasks" / "daily.dig").read_text()


def test_the_shipped_daily_workflow_runs_every_step_of_the_graph_in_order(write_dig):
    assert (
        _problems(
            write_dig,
            {
                "tasks/daily.dig": DAILY,
                "demo.dig": "_export:\n  pipeline: demo\n+daily:\n  call>: tasks/daily.dig\n",
            },
        )
        == []
    )


def test_check_names_a_step_the_workflow_misses(write_dig):
    daily = DAILY.replace("+publish:", "+publish_disabled:\n  echo>: skipped\n+unused:")
    daily = daily.replace("reco submit publish", "echo publish")
    problems = _problems(
        write_dig,
        {
            "tasks/daily.dig": daily,
            "demo.dig": "_export:\n  pipeline: demo\n+daily:\n  call>: tasks/daily.dig\n",
        },
    )
    assert len(problems) == 1, problems
    assert "demo.dig" in problems[0] and "no task runs step 'publish'" in problems[0]
    assert "after the steps it reads from: export, train" in problems[0]


def test_check_names_a_step_ordered_before_what_it_reads(write_dig):
    # export inside the parallel group: it would run alongside the candidates it combines
    daily = DAILY.replace(
        "  +related:\n",
        "  +export_too_early:\n    sh>: reco submit export --pipeline ${pipeline} --date ${session_date} --env ${env}\n  +related:\n",
    )
    problems = _problems(
        write_dig,
        {
            "tasks/daily.dig": daily,
            "demo.dig": "_export:\n  pipeline: demo\n+daily:\n  call>: tasks/daily.dig\n",
        },
    )
    assert problems and all("+export_too_early" in p for p in problems), problems
    assert any("step 'export' runs before or alongside step 'candidates'" in p for p in problems)
    assert any("step 'export' runs before or alongside step 'related'" in p for p in problems)


def test_check_catches_undefined_variables_and_group_retry(write_dig):
    problems = _problems(
        write_dig,
        {
            "w.dig": """
+a:
  sh>: reco submit train --pipeline ${pipeline} --date ${session_date}
+b:
  _retry: 2
  +c:
    echo>: ${error.message}
"""
        },
    )
    assert any("+w+a" in p and "${pipeline} is not defined" in p for p in problems)
    assert any("+w+b" in p and "_retry on a group" in p for p in problems)
    assert any("+w+b+c" in p and "${error.message} is not defined" in p for p in problems)


def test_check_accepts_error_message_inside_error(write_dig):
    assert _problems(write_dig, {"w.dig": "_error:\n  echo>: ${error.message}\n+a:\n  echo>: hi\n"}) == []


def test_check_reports_parse_errors_and_exits_3(write_dig, capsys):
    from batch.cli import main

    write_dig("w.dig", "+a:\n  py>: x.y\n")
    write_dig("tasks/broken.dig", "+a: [unclosed\n")
    assert main(["digdag", "check", str(write_dig.dir)]) == 3
    err = capsys.readouterr().err
    assert "w.dig: task +w+a: operator py> is not supported" in err
    assert "broken.dig" in err
