"""Slack webhook delivery over real HTTP (429 Retry-After, 5xx, give-up), message content, and that the webhook URL
never reaches logs or output."""

from __future__ import annotations

import io
import logging
import sys

import pytest

from batch.alerts.slack import (
    SlackNotifier,
    as_text,
    error_tail,
    failure_message,
    sla_message,
    success_message,
)

SECRET_PART = "xoxsecretwebhooktoken"


@pytest.fixture
def write_dig(tmp_path):
    def write(name: str, text: str):
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


def notifier(url, **kw):
    sleeps: list[float] = []
    n = SlackNotifier(url, sleep=sleeps.append, **kw)
    n.sleeps = sleeps
    return n


def msg():
    return failure_message(
        pipeline="demo",
        session_date="2026-11-21",
        env="prod",
        task="+demo+daily^sub+train",
        error="Command failed with code 65",
        attempt_id="42",
        attempt_url="https://digdag.example/attempts/42",
    )


def test_delivers_block_kit_json(webhook):
    n = notifier(webhook.url)
    assert n.send(msg()) is True
    [body] = webhook.bodies
    assert body["text"].startswith("reco demo 2026-11-21 failed in prod")
    assert body["blocks"][0]["type"] == "header"


def test_429_waits_for_retry_after_then_delivers(webhook):
    webhook.script = [(429, {"Retry-After": "3"})]
    n = notifier(webhook.url)
    assert n.send(msg()) is True
    assert n.sleeps == [3.0]
    assert len(webhook.bodies) == 2


def test_5xx_is_retried_with_backoff_then_given_up_without_raising(webhook, caplog):
    webhook.script = [(500, {}), (503, {}), (502, {})]
    n = notifier(webhook.url, max_attempts=3, backoff_s=0.5)
    with caplog.at_level(logging.INFO):
        assert n.send(msg()) is False
    assert n.sleeps == [0.5, 1.0]
    assert len(webhook.bodies) == 3
    assert "giving up" in caplog.text
    assert SECRET_PART not in caplog.text and webhook.url not in caplog.text


def test_4xx_other_than_429_is_not_retried(webhook, caplog):
    webhook.script = [(404, {})]
    n = notifier(webhook.url)
    with caplog.at_level(logging.INFO):
        assert n.send(msg()) is False
    assert len(webhook.bodies) == 1 and n.sleeps == []
    assert "refused" in caplog.text and SECRET_PART not in caplog.text


def test_connection_error_never_logs_the_url(caplog):
    url = f"http://127.0.0.1:9/services/T0/B0/{SECRET_PART}"
    n = notifier(url, max_attempts=2, timeout_s=1)
    with caplog.at_level(logging.INFO):
        assert n.send(msg()) is False
    assert "ConnectionError" in caplog.text
    assert SECRET_PART not in caplog.text
    assert SECRET_PART not in repr(n)


def test_no_webhook_prints_the_message():
    out = io.StringIO()
    assert SlackNotifier(None, out=out).send(msg()) is False
    text = out.getvalue()
    assert "no webhook set" in text
    assert "Failed task: `+demo+daily^sub+train`" in text
    assert "Command failed with code 65" in text


def test_failure_message_fields_and_error_tail_redacted():
    long_log = "\n".join(
        [f'{{"message": "noise {i}"}}' for i in range(50)]
        + ["Authorization: Bearer abc.def.ghi", "reco: error: no events in the window"]
    )
    m = failure_message(
        pipeline="demo",
        session_date="2026-11-21",
        env="prod",
        task="+demo+x",
        error="Command failed with code 65",
        log_tail=long_log,
        attempt_id="7",
        attempt_url="https://digdag.example/attempts/7",
    )
    text = as_text(m)
    assert "Status: :red_circle: failed" in text and "Session date: 2026-11-21" in text
    assert "<https://digdag.example/attempts/7|7>" in text
    assert "reco: error: no events in the window" in text
    assert "noise 3" not in text  # the CLI's error line, not the log noise around it
    assert "abc.def.ghi" not in str(m)
    assert "reco digdag retry 7 --env prod" in text
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in m["blocks"] if b["type"] == "section")


def test_error_tail_caps_length():
    tail = error_tail("\n".join("x" * 1000 for _ in range(20)))
    assert len(tail) < 3000


def test_success_message_key_figures():
    summary = {
        "pipeline": "demo",
        "date": "2026-11-21",
        "data": {"users": 5000, "items": 2000, "interactions": 12345},
        "model": {"version": "als-20261121-abc"},
        "metrics": {"model": {"ndcg@10": 0.1234}, "popularity_baseline": {"ndcg@10": 0.05}},
        "export": {"stats": {"rows": 250000}},
        "gates": {"data checks": {"passed": True}, "publish check": {"passed": True}},
        "steps": {"candidates": {"shards_committed": 2, "shard_count": 2}},
        "published": {"this_date_published": True},
    }
    text = as_text(
        success_message(summary, env="prod", attempt_id="9", report_url="https://r.example/demo/x")
    )
    assert "Users / items: 5,000 / 2,000" in text
    assert "nDCG@10: 0.1234 (popularity 0.0500)" in text
    assert "Gates: data checks passed, publish check passed; rows 250,000" in text
    assert "Candidates: 2/2 shards" in text
    assert "succeeded" in text and "not published" not in text


def test_sla_message():
    text = as_text(sla_message(pipeline="demo", session_date="2026-11-21", env="prod", attempt_id="5"))
    assert "late" in text and "reco digdag status 5 --env prod" in text


def test_notify_cli_failure_from_a_local_attempt(reco_home, webhook, write_dig, monkeypatch, capsys):
    """The real path: a workflow's _error task runs `reco notify failure`; the webhook comes from the secret."""
    from batch.digdag.local import run_workflow

    monkeypatch.setenv("SLACK_WEBHOOK_URL", webhook.url)
    wf = write_dig(
        "alert.dig",
        f"""
_export:
  pipeline: demo
_error:
  sh>: reco notify failure --pipeline ${{pipeline}} --date ${{session_date}} --env ${{env}} --attempt ${{attempt_id}}
  _env:
    RECO_ERROR_MESSAGE: ${{error.message}}
    SLACK_WEBHOOK_URL: ${{secret:slack.webhook_url}}
+train:
  sh>: {sys.executable} fail.py
""",
    )
    write_dig("fail.py", "import sys\nprint('reco: error: no events for 2026-11-21')\nsys.exit(65)\n")
    out = io.StringIO()
    from datetime import date

    result = run_workflow(wf, date(2026, 11, 21), {"env": "local"}, out=out)
    assert not result.success
    [body] = webhook.bodies
    text = as_text(body)
    assert "Failed task: `+alert+train`" in text
    assert "Command failed with code 65" in text and "reco: error: no events for 2026-11-21" in text
    assert f"|{result.attempt_id}>" in text
    captured = capsys.readouterr()
    for stream in (out.getvalue(), captured.out, captured.err):
        assert SECRET_PART not in stream


def test_notify_cli_success_without_artifacts_still_sends(reco_home, webhook, monkeypatch, capsys):
    from batch.cli import main

    monkeypatch.setenv("SLACK_WEBHOOK_URL", webhook.url)
    webhook.script = [(503, {})]
    monkeypatch.setattr("batch.alerts.slack.time.sleep", lambda s: None)
    assert main(["notify", "success", "--pipeline", "demo", "--date", "2026-11-21", "--attempt", "3"]) == 0
    assert len(webhook.bodies) == 2
    assert "demo 2026-11-21 done (local)" in webhook.bodies[-1]["blocks"][0]["text"]["text"]
    captured = capsys.readouterr()
    assert SECRET_PART not in captured.out + captured.err


def test_notify_cli_never_fails_the_batch_when_slack_is_down(reco_home, monkeypatch, capsys):
    from batch.cli import main

    monkeypatch.setenv("SLACK_WEBHOOK_URL", f"http://127.0.0.1:9/services/T/B/{SECRET_PART}")
    monkeypatch.setattr("batch.alerts.slack.time.sleep", lambda s: None)
    assert main(["notify", "sla", "--pipeline", "demo", "--date", "2026-11-21"]) == 0
    captured = capsys.readouterr()
    assert SECRET_PART not in captured.out + captured.err


def test_notify_cli_without_webhook_prints(reco_home, capsys):
    from batch.cli import main

    assert (
        main(
            [
                "notify",
                "failure",
                "--pipeline",
                "demo",
                "--date",
                "2026-11-21",
                "--task",
                "+demo+x",
                "--error",
                "boom",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "no webhook set" in out and "Failed task: `+demo+x`" in out and "boom" in out
