"""The local .dig runner: order, parallelism, _export scoping, _error, _retry, variables, call>, secrets, exit codes."""

from __future__ import annotations

import io
import json
import sys
from datetime import date

import pytest

from batch.digdag.local import read_attempt_record, run_workflow

D = date(2026, 11, 30)
PY = sys.executable


def run(path, params=None, **kw):
    out = io.StringIO()
    sleeps: list[float] = []
    result = run_workflow(path, D, params or {}, out=out, sleep=sleeps.append, **kw)
    return result, out.getvalue(), sleeps


def test_tasks_run_top_to_bottom_and_output_is_shown(reco_home, write_dig):
    wf = write_dig(
        "order.dig",
        """
+first:
  sh>: echo one >> order.txt
+second:
  +inner:
    sh>: echo two >> order.txt
+third:
  echo>: three
""",
    )
    result, out, _ = run(wf)
    assert result.success
    assert (write_dig.dir / "order.txt").read_text().split() == ["one", "two"]
    assert result.order == ["+order", "+order+first", "+order+second", "+order+second+inner", "+order+third"]
    assert "three\n" in out


def test_parallel_children_overlap_and_limit_serialises(reco_home, write_dig):
    body = "\n".join(
        f"""  +t{i}:
    sh>: {PY} -c "import time,sys; s=time.time(); time.sleep(0.4); print(s, time.time())" > t{i}.txt"""
        for i in range(3)
    )
    par = write_dig("par.dig", f"+group:\n  _parallel: true\n{body}\n")
    result, _, _ = run(par)
    assert result.success
    spans = [tuple(map(float, (write_dig.dir / f"t{i}.txt").read_text().split())) for i in range(3)]
    assert max(s for s, _ in spans) < min(e for _, e in spans), "parallel tasks should overlap"

    lim = write_dig("lim.dig", f"+group:\n  _parallel: {{limit: 1}}\n{body}\n")
    result, _, _ = run(lim)
    assert result.success
    spans = sorted(tuple(map(float, (write_dig.dir / f"t{i}.txt").read_text().split())) for i in range(3))
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end - 0.01, "limit 1 runs one at a time"


def test_parallel_failure_fails_group_and_later_siblings_do_not_start(reco_home, write_dig):
    wf = write_dig(
        "pf.dig",
        """
+group:
  _parallel: {limit: 1}
  +bad:
    sh>: exit 2
  +never:
    sh>: touch never.txt
+after:
  sh>: touch after.txt
""",
    )
    result, _, _ = run(wf)
    assert not result.success
    assert result.failed_task == "+pf+group+bad"
    assert not (write_dig.dir / "never.txt").exists()
    assert not (write_dig.dir / "after.txt").exists()


def test_error_task_sees_error_message_and_parent_error_runs_too(reco_home, write_dig):
    wf = write_dig(
        "err.dig",
        """
_error:
  sh>: echo "outer:$MSG" >> errors.txt
  _env:
    MSG: ${error.message}
+step:
  _error:
    echo>: inner saw ${error.message} in ${task_name}
  +boom:
    fail>: disk full on ${session_date}
+not_run:
  sh>: touch not_run.txt
""",
    )
    result, out, _ = run(wf)
    assert not result.success
    assert result.error == "disk full on 2026-11-30"
    assert "inner saw disk full on 2026-11-30 in +err+step^error" in out
    assert (write_dig.dir / "errors.txt").read_text() == "outer:disk full on 2026-11-30\n"
    assert not (write_dig.dir / "not_run.txt").exists()


def test_retry_reruns_until_success_with_exponential_intervals(reco_home, write_dig):
    wf = write_dig(
        "retry.dig",
        f"""
+flaky:
  _retry: {{limit: 3, interval: 2, interval_type: exponential}}
  sh>: {PY} -c "import os,sys; n=len(open('n.txt').read()) if os.path.exists('n.txt') else 0; open('n.txt','a').write('x'); sys.exit(0 if n >= 2 else 1)"
""",
    )
    result, _, sleeps = run(wf)
    assert result.success
    assert (write_dig.dir / "n.txt").read_text() == "xxx"
    assert sleeps == [2.0, 4.0]


def test_retry_gives_up_after_limit_then_error_runs_once(reco_home, write_dig):
    wf = write_dig(
        "giveup.dig",
        """
_error:
  sh>: echo e >> error_runs.txt
+always:
  _retry: {limit: 2, interval: 5}
  sh>: echo run >> runs.txt; exit 1
""",
    )
    result, _, sleeps = run(wf)
    assert not result.success
    assert (write_dig.dir / "runs.txt").read_text().count("run") == 3
    assert (write_dig.dir / "error_runs.txt").read_text() == "e\n"
    assert sleeps == [5.0, 5.0]


def test_group_retry_reruns_the_whole_group(reco_home, write_dig):
    wf = write_dig(
        "grp.dig",
        f"""
+group:
  _retry: 1
  +a:
    sh>: echo a >> a.txt
  +b:
    sh>: {PY} -c "import os,sys; first=not os.path.exists('b.txt'); open('b.txt','a').write('b'); sys.exit(1 if first else 0)"
""",
    )
    result, _, _ = run(wf)
    assert result.success
    assert (write_dig.dir / "a.txt").read_text() == "a\na\n"


def test_builtin_variables_for_a_daily_schedule_in_tokyo(reco_home, write_dig):
    wf = write_dig(
        "vars.dig",
        """
timezone: Asia/Tokyo
schedule:
  daily>: 04:00:00
+show:
  echo>: ${session_time}|${session_date}|${session_date_compact}|${session_local_time}|${session_tz_offset}|${session_unixtime}|${last_session_date}|${next_session_date}|${next_session_time}|${timezone}|${task_name}|${attempt_id}
""",
    )
    result, out, _ = run(wf)
    assert result.success
    line = next(ln for ln in out.splitlines() if ln.startswith("2026-11-30T"))
    parts = line.split("|")
    assert parts[:6] == [
        "2026-11-30T00:00:00+09:00",
        "2026-11-30",
        "20261130",
        "2026-11-30 00:00:00",
        "+0900",
        str(1795964400),
    ]  # 2026-11-29T15:00:00Z
    assert parts[6:11] == [
        "2026-11-29",
        "2026-12-01",
        "2026-12-01T00:00:00+09:00",
        "Asia/Tokyo",
        "+vars+show",
    ]
    assert parts[11] == result.attempt_id


def test_last_and_next_only_with_a_schedule(reco_home, write_dig):
    wf = write_dig("nosched.dig", "+show:\n  echo>: ${last_session_date}\n")
    result, out, _ = run(wf)
    assert not result.success
    assert "last_session_date" in result.error


def test_export_scoping_and_precedence_over_params(reco_home, write_dig):
    wf = write_dig(
        "scope.dig",
        """
_export:
  fixed: from_file
+a:
  _export:
    inner: only_a
  +x:
    echo>: a ${fixed} ${inner} ${given}
+b:
  echo>: b ${fixed} ${given}
+c:
  echo>: c ${inner}
""",
    )
    result, out, _ = run(wf, {"fixed": "from_cli", "given": "cli"})
    assert "a from_file only_a cli\n" in out  # _export beats -p, as in Digdag
    assert "b from_file cli\n" in out
    assert not result.success and result.failed_task == "+scope+c"  # ${inner} is not visible outside +a


def test_sh_gets_params_as_env_and_runs_in_the_files_directory(reco_home, write_dig):
    write_dig(
        "sub/tasks.dig",
        """
+where:
  sh>: pwd > where.txt; echo "$pipeline $session_date $env" > env.txt
""",
    )
    wf = write_dig("main.dig", "_export:\n  pipeline: demo\n+run:\n  call>: sub/tasks.dig\n")
    result, _, _ = run(wf, {"env": "local"})
    assert result.success
    assert (write_dig.dir / "sub" / "where.txt").read_text().strip() == str(write_dig.dir / "sub")
    assert (write_dig.dir / "sub" / "env.txt").read_text().strip() == "demo 2026-11-30 local"
    assert "+main+run^sub+where" in result.order


def test_secret_comes_from_env_and_never_shows(reco_home, write_dig, monkeypatch):
    secret = "https://hooks.example.com/services/T000/B000/very-secret-token"
    monkeypatch.setenv("SLACK_WEBHOOK_URL", secret)
    wf = write_dig(
        "sec.dig",
        """
+leak:
  sh>: echo "url=$HOOK" ; exit 1
  _env:
    HOOK: ${secret:slack.webhook_url}
""",
    )
    result, out, _ = run(wf)
    assert not result.success
    assert "url=***" in out
    assert secret not in out
    record = json.loads((reco_home / "digdag" / "attempts" / f"{result.attempt_id}.json").read_text())
    assert secret not in json.dumps(record)


def test_missing_secret_is_empty(reco_home, write_dig, monkeypatch):
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)
    wf = write_dig(
        "nosec.dig", '+s:\n  sh>: test -z "$HOOK"\n  _env:\n    HOOK: ${secret:slack.webhook_url}\n'
    )
    assert run(wf)[0].success


def test_attempt_record_names_the_failed_task_and_its_output(reco_home, write_dig):
    wf = write_dig(
        "rec.dig", "+ok:\n  echo>: fine\n+bad:\n  sh>: \"echo 'reco: error: no events'; exit 65\"\n"
    )
    result, _, _ = run(wf)
    record = read_attempt_record(result.attempt_id)
    assert record["done"] and not record["success"]
    bad = [t for t in record["tasks"] if t["state"] == "error" and not t["isGroup"]]
    assert [t["fullName"] for t in bad] == ["+rec+bad"]
    assert bad[0]["tail"] == ["reco: error: no events"]
    assert bad[0]["error"] == "Command failed with code 65"


def test_sla_duration_runs_its_task_when_late(reco_home, write_dig):
    wf = write_dig(
        "sla.dig",
        """
sla:
  duration: 00:00:01
  +late:
    sh>: echo late > late.txt
+slow:
  sh>: sleep 1.6
""",
    )
    result, _, _ = run(wf)
    assert result.success and result.sla_missed
    assert (write_dig.dir / "late.txt").read_text() == "late\n"


def test_sla_not_fired_when_on_time(reco_home, write_dig):
    wf = write_dig(
        "ontime.dig", "sla:\n  duration: 01:00\n  +late:\n    sh>: touch late.txt\n+quick:\n  echo>: hi\n"
    )
    result, _, _ = run(wf)
    assert result.success and not result.sla_missed
    assert not (write_dig.dir / "late.txt").exists()


def test_cli_exits_non_zero_after_running_error(reco_home, write_dig, capsys):
    from batch.cli import main

    wf = write_dig("cli.dig", "_error:\n  sh>: touch handled.txt\n+boom:\n  fail>: nope\n")
    assert main(["digdag", "run", str(wf), "--session-date", "2026-11-30"]) == 1
    assert (write_dig.dir / "handled.txt").exists()
    ok = write_dig("ok.dig", "+hi:\n  echo>: ${env} ${who}\n")
    assert main(["digdag", "run", str(ok), "--session-date", "2026-11-30", "-p", "who=me"]) == 0
    assert "local me" in capsys.readouterr().out


def test_cli_rejects_unsupported_workflow_with_exit_65(reco_home, write_dig, capsys):
    from batch.cli import main

    wf = write_dig("js.dig", "+x:\n  echo>: ${moment(session_time).format('YYYY')}\n")
    assert main(["digdag", "run", str(wf), "--session-date", "2026-11-30"]) == 65
    err = capsys.readouterr().err
    assert "js.dig: task +js+x" in err and "JavaScript" in err


@pytest.mark.slow
def test_demo_workflow_end_to_end(reco_home, capsys):
    """The real digdag/demo.dig through `reco demo` on small generated data: every step, then the summary."""
    from batch.cli import main

    assert main(["data", "generate", "--pipeline", "demo", "--users", "500", "--items", "300"]) == 0
    code = main(["demo", "--date", "2026-11-21"])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    assert "Demo pipeline 'demo' for 2026-11-21" in captured.out
    assert "publish check passed" in captured.out and "gates:" in captured.out
    record = read_attempt_record("1")
    names = [t["fullName"] for t in record["tasks"] if t["state"] == "success"]
    for step in (
        "aggregate",
        "train",
        "candidates_and_related+candidates",
        "candidates_and_related+related",
        "export",
        "publish",
        "report",
    ):
        assert f"+demo+daily^sub+{step}" in names
