"""The Digdag REST client over real HTTP against the in-process server in conftest.py."""

from __future__ import annotations

import gzip
import io
import tarfile
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
import requests

from batch.config import PROJECT_ROOT
from batch.digdag.client import DigdagClient, DigdagError, IapTokenSource, build_archive

from .conftest import gz

TOKYO = ZoneInfo("Asia/Tokyo")


def client(server, **kw) -> DigdagClient:
    sleeps: list[float] = []
    c = DigdagClient(server.url, backoff_s=0.01, sleep=sleeps.append, **kw)
    c.sleeps = sleeps
    return c


def test_archive_holds_only_workflows_with_env_and_called_files():
    archive = build_archive(PROJECT_ROOT / "digdag", env="prod")
    assert len(archive.data) < 2 * 1024 * 1024
    with tarfile.open(fileobj=io.BytesIO(archive.data)) as tar:
        names = tar.getnames()
        demo = tar.extractfile("demo.dig").read().decode()
    assert names == [
        "demo.dig",
        "tasks/daily.dig",
        "tune_demo.dig",
    ]  # tune_demo: weekly tuning (docs/tuning.md)
    assert "env: prod" in demo and "pipeline: demo" in demo
    assert build_archive(PROJECT_ROOT / "digdag", env="prod").data == archive.data  # deterministic
    assert build_archive(PROJECT_ROOT / "digdag", env="dev").revision != archive.revision


def test_pushed_workflow_still_parses_to_the_same_tasks(tmp_path):
    from batch.digdag.workflow import load_workflow

    archive = build_archive(PROJECT_ROOT / "digdag", env="staging")
    with tarfile.open(fileobj=io.BytesIO(archive.data)) as tar:
        tar.extractall(tmp_path, filter="data")
    pushed, repo = load_workflow(tmp_path / "demo.dig"), load_workflow(PROJECT_ROOT / "digdag" / "demo.dig")
    assert [t.full_name for t in pushed.root.walk()] == [t.full_name for t in repo.root.walk()]
    assert pushed.schedule.describe() == repo.schedule.describe()
    assert pushed.root.export == {**repo.root.export, "env": "staging"}


def test_push_project_sends_gzip_with_name_and_revision(digdag_server):
    c = client(digdag_server)
    archive = build_archive(PROJECT_ROOT / "digdag", env="dev")
    project = c.push_project("reco", archive.data, archive.revision)
    method, path, query, body = digdag_server.requests[-1]
    assert (method, path, query) == (
        "PUT",
        "/api/projects",
        {"project": "reco", "revision": archive.revision},
    )
    assert body == archive.data and gzip.decompress(body)
    assert project.name == "reco" and project.revision == archive.revision
    assert c.find_project("reco").id == project.id


def test_start_attempt_then_repeated_start_returns_the_existing_attempt(digdag_server):
    wf = digdag_server.add_workflow()
    c = client(digdag_server)
    found = c.find_workflow(c.find_project("reco").id, "demo")
    st = found.session_time(date(2026, 11, 21))
    assert st.isoformat() == "2026-11-21T00:00:00+09:00"
    first, created = c.start_attempt(found.id, st)
    assert created and first.status == "running" and first.workflow_name == "demo"
    again, created_again = c.start_attempt(found.id, st)
    assert not created_again and again.id == first.id
    assert digdag_server.requests[-1][3]["sessionTime"] == "2026-11-21T00:00:00+09:00"
    assert wf["id"] == found.id


def test_not_found_and_unauthorised_have_clear_messages(digdag_server):
    c = client(digdag_server)
    with pytest.raises(DigdagError) as e:
        c.attempt("999")
    assert e.value.status == 404 and "attempt 999" in str(e.value) and "not found" in str(e.value)
    with pytest.raises(DigdagError, match="no project named 'nope'"):
        c.find_project("nope")
    digdag_server.require_token = "good-token"
    with pytest.raises(DigdagError) as e:
        c.version()
    assert e.value.status == 401 and "iap_audience" in e.value.hint
    ok = client(digdag_server, token=IapTokenSource("aud", fetch=lambda audience: "good-token"))
    assert ok.version() == "0.10.5"


def test_token_and_extra_headers_never_show_in_errors(digdag_server):
    digdag_server.require_token = "x"
    c = client(digdag_server, headers={"X-Team": "reco"}, token=lambda: "super-secret-id-token")
    with pytest.raises(DigdagError) as e:
        c.version()
    assert "super-secret-id-token" not in str(e.value) and "super-secret" not in repr(c)


def test_5xx_then_success_is_retried_with_backoff(digdag_server):
    digdag_server.fail_next = [503, 502]
    c = client(digdag_server)
    assert c.version() == "0.10.5"
    assert c.sleeps == [0.01, 0.02]
    assert len([r for r in digdag_server.requests if r[1] == "/api/version"]) == 3


def test_5xx_forever_gives_up_with_a_message(digdag_server):
    digdag_server.fail_next = [500] * 10
    c = client(digdag_server, retries=2)
    with pytest.raises(DigdagError, match="failed after 3 tries"):
        c.version()


def test_connection_errors_are_retried():
    calls = []

    class Flaky(requests.Session):
        def request(self, *a, **kw):
            calls.append(1)
            raise requests.ConnectionError("connection refused")

    c = DigdagClient("http://127.0.0.1:9", session=Flaky(), retries=3, backoff_s=0.5, sleep=lambda s: None)
    with pytest.raises(DigdagError, match="ConnectionError"):
        c.version()
    assert len(calls) == 4


def test_wait_polls_until_done(digdag_server):
    wf = digdag_server.add_workflow()
    a = digdag_server.add_attempt(wf, "2026-11-21T00:00:00+09:00", done=False)
    c = client(digdag_server)
    polls = []

    def on_poll(att):
        polls.append(att.status)
        if len(polls) == 2:
            a.update(done=True, success=True)

    assert c.wait(a["id"], poll_s=0.5, on_poll=on_poll).status == "success"
    assert polls == ["running", "running"]
    assert c.sleeps == [0.5, 0.5]


def test_kill_running_and_already_done(digdag_server):
    wf = digdag_server.add_workflow()
    running = digdag_server.add_attempt(wf, "2026-11-21T00:00:00+09:00", done=False)
    done = digdag_server.add_attempt(wf, "2026-11-20T00:00:00+09:00", done=True)
    c = client(digdag_server)
    assert c.kill(running["id"]) is True
    assert c.attempt(running["id"]).cancel_requested
    assert c.kill(done["id"]) is False


def test_retry_failed_resumes_with_a_new_name(digdag_server):
    wf = digdag_server.add_workflow()
    failed = digdag_server.add_attempt(
        wf, "2026-11-21T00:00:00+09:00", done=True, success=False, params={"x": "1"}
    )
    c = client(digdag_server)
    new, created = c.retry_failed(failed["id"], "retry-1")
    assert created and new.retry_attempt_name == "retry-1" and new.id != failed["id"]
    body = digdag_server.requests[-1][3]
    assert body["resume"] == {"mode": "failed", "attemptId": failed["id"]}
    assert body["sessionTime"] == "2026-11-21T00:00:00+09:00" and body["params"] == {"x": "1"}
    again, created = c.retry_failed(failed["id"], "retry-1")
    assert not created and again.id == new.id


def test_failed_task_log_tail_is_gunzipped_and_redacted(digdag_server):
    wf = digdag_server.add_workflow()
    a = digdag_server.add_attempt(wf, "2026-11-21T00:00:00+09:00", done=True)
    digdag_server.tasks[a["id"]] = [
        {
            "id": "1",
            "fullName": "+demo",
            "parentId": None,
            "isGroup": True,
            "state": "group_error",
            "error": {},
        },
        {
            "id": "2",
            "fullName": "+demo+daily^sub+train",
            "parentId": "1",
            "isGroup": False,
            "state": "error",
            "error": {"message": "Command failed with code 65"},
        },
    ]
    lines = [f"line {i}" for i in range(100)] + ["token=abc123secret", "reco: error: no events"]
    digdag_server.logs[(a["id"], "+demo+daily^sub+train@1.log.gz")] = gz("\n".join(lines))
    c = client(digdag_server)
    task, tail = c.failed_task_log_tail(a["id"], lines=5)
    assert task.full_name == "+demo+daily^sub+train" and task.error_message == "Command failed with code 65"
    assert tail.splitlines()[-1] == "reco: error: no events"
    assert len(tail.splitlines()) == 5
    assert "abc123secret" not in tail


def test_schedules_disable_enable_skip(digdag_server):
    digdag_server.add_workflow(schedule={"daily>": "04:00:00"})
    c = client(digdag_server)
    [s] = c.schedules()
    assert s.workflow_name == "demo" and s.disabled_at is None
    assert s.next_schedule == datetime(2026, 11, 26, tzinfo=TOKYO)
    assert c.disable_schedule(s.id).disabled_at is not None
    assert c.enable_schedule(s.id).disabled_at is None
    skipped = c.skip_schedule(s.id, next_time=datetime(2026, 12, 1, tzinfo=TOKYO))
    assert skipped.next_schedule_time == "2026-12-01T00:00:00+09:00"


def test_push_cli_pauses_schedules_where_not_enabled(digdag_server, monkeypatch, capsys):
    from batch.cli import main

    monkeypatch.setenv("GCP_PROJECT", "test-project")
    digdag_server.add_workflow(schedule={"daily>": "04:00:00"})
    assert main(["digdag", "push", "--env", "dev", "--endpoint", digdag_server.url]) == 0
    out = capsys.readouterr().out
    assert "paused (schedule_enabled is false for dev)" in out
    assert next(iter(digdag_server.schedules.values()))["disabledAt"] is not None
    [archive] = digdag_server.archives
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        assert "env: dev" in tar.extractfile("demo.dig").read().decode()


def test_push_cli_leaves_schedules_on_where_enabled(digdag_server, monkeypatch, capsys):
    from batch.cli import main

    monkeypatch.setenv("GCP_PROJECT", "test-project")
    monkeypatch.setenv("DIGDAG_ENDPOINT", digdag_server.url)
    digdag_server.add_workflow(schedule={"daily>": "04:00:00"})
    assert main(["digdag", "push", "--env", "prod"]) == 0
    assert next(iter(digdag_server.schedules.values()))["disabledAt"] is None
    assert "next session" in capsys.readouterr().out


def test_start_cli_reports_existing_attempt_and_succeeds(digdag_server, monkeypatch, capsys):
    from batch.cli import main

    monkeypatch.setenv("GCP_PROJECT", "test-project")
    digdag_server.add_workflow()
    args = [
        "digdag",
        "start",
        "--pipeline",
        "demo",
        "--session-date",
        "2026-11-21",
        "--env",
        "staging",
        "--endpoint",
        digdag_server.url,
    ]
    assert main(args) == 0
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "started attempt" in out and "already exists (running); not starting another" in out
    assert len(digdag_server.attempts) == 1


def test_status_logs_retry_kill_schedules_cli(digdag_server, monkeypatch, capsys):
    from batch.cli import main

    monkeypatch.setenv("GCP_PROJECT", "test-project")
    monkeypatch.setenv("DIGDAG_ENDPOINT", digdag_server.url)
    wf = digdag_server.add_workflow(schedule={"daily>": "04:00:00"})
    failed = digdag_server.add_attempt(wf, "2026-11-21T00:00:00+09:00", done=True, success=False)
    digdag_server.tasks[failed["id"]] = [
        {
            "id": "2",
            "fullName": "+demo+daily^sub+export",
            "parentId": "1",
            "isGroup": False,
            "state": "error",
            "error": {"message": "Command failed with code 3"},
        }
    ]
    digdag_server.logs[(failed["id"], "+demo+daily^sub+export@1.log.gz")] = gz(
        "a\nreco: error: publish check\n"
    )
    env = ["--env", "prod"]
    assert main(["digdag", "status", failed["id"], *env]) == 1
    assert main(["digdag", "logs", failed["id"], *env]) == 0
    assert main(["digdag", "retry", failed["id"], "--name", "r1", *env]) == 0
    assert main(["digdag", "kill", failed["id"], *env]) == 0
    assert main(["digdag", "schedules", "--disable", "demo", *env]) == 0
    assert main(["digdag", "schedules", *env]) == 0
    assert main(["digdag", "schedules", "--enable", "nosuch", *env]) == 65
    out = capsys.readouterr().out
    assert f"attempt {failed['id']}: error" in out and "Command failed with code 3" in out
    assert "reco: error: publish check" in out
    assert "retry r1" in out and "already done; nothing to kill" in out
    assert "paused schedule of demo" in out and "PAUSED" in out
