"""Slack incoming-webhook messages (Block Kit) for the daily batch: failure, success (key figures), SLA late.

Delivery never fails the batch: 429 (honouring Retry-After) and 5xx/connection errors are retried with backoff,
then given up with one log line. The webhook URL is a secret: it is read from ``$SLACK_WEBHOOK_URL`` (Digdag's
``${secret:slack.webhook_url}`` exported into it) and never appears in a log line, an exception message or the
terminal. Without a webhook the message is printed to the terminal instead.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, TextIO
from urllib.parse import urlparse

import requests

from batch.logs import redact

log = logging.getLogger("reco.alerts.slack")

MAX_ERROR_LINES = 15
MAX_LINE_CHARS = 400
MAX_SECTION_CHARS = 2800  # Slack's limit for a section's text is 3000


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _field(title: str, value: Any) -> dict:
    return {"type": "mrkdwn", "text": f"*{title}*\n{value}"}


def _link(url: str | None, label: str) -> str:
    return f"<{url}|{_escape(label)}>" if url else _escape(label)


def error_tail(text: str | None, lines: int = MAX_ERROR_LINES) -> str:
    """The last lines of an error, redacted and cut to what a Slack section holds."""
    if not text:
        return ""
    all_lines = [ln.rstrip() for ln in redact(text).strip().splitlines() if ln.strip()]
    # a CLI's one-line error ("reco: error: ...") says more than the log lines around it
    errors = [ln for ln in all_lines if "error:" in ln.lower() and not ln.lstrip().startswith("{")]
    kept = (errors or all_lines)[-lines:]
    kept = [ln if len(ln) <= MAX_LINE_CHARS else ln[: MAX_LINE_CHARS - 1] + "…" for ln in kept]
    out = "\n".join(kept)
    if len(out) > MAX_SECTION_CHARS - 40:
        out = "…" + out[-(MAX_SECTION_CHARS - 41) :]
    return out


def failure_message(
    *,
    pipeline: str,
    session_date: str,
    env: str,
    task: str | None = None,
    error: str | None = None,
    log_tail: str | None = None,
    attempt_id: str | None = None,
    attempt_url: str | None = None,
) -> dict:
    fields = [
        _field("Status", ":red_circle: failed"),
        _field("Pipeline", f"`{_escape(pipeline)}`"),
        _field("Session date", session_date),
        _field("Environment", env),
        _field("Failed task", f"`{_escape(task)}`" if task else "unknown"),
        _field("Attempt", _link(attempt_url, attempt_id) if attempt_id else "n/a"),
    ]
    blocks: list[dict] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": f"{pipeline} {session_date} failed ({env})"},
        },
        {"type": "section", "fields": fields},
    ]
    detail = "\n".join(x for x in (error_tail(error), error_tail(log_tail)) if x)
    if detail:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"*Last lines of the error*\n```{_escape(detail)}```"},
            }
        )
    nxt = (
        [f"`reco digdag logs {attempt_id} --env {env}`", f"`reco digdag retry {attempt_id} --env {env}`"]
        if attempt_id and env != "local"
        else [f"`reco digdag run digdag/{pipeline}.dig --session-date {session_date}`"]
    )
    blocks.append(
        {
            "type": "context",
            "elements": [
                {"type": "mrkdwn", "text": "Next: " + " · ".join(nxt) + " (the previous publish stays live)"}
            ],
        }
    )
    text = f"reco {pipeline} {session_date} failed in {env}" + (f" at {task}" if task else "")
    return {"text": text, "blocks": blocks}


def success_message(
    summary: dict,
    *,
    env: str,
    attempt_id: str | None = None,
    attempt_url: str | None = None,
    report_url: str | None = None,
) -> dict:
    pipeline, dt = summary.get("pipeline", "?"), summary.get("date", "?")
    data = summary.get("data") or {}
    metrics = summary.get("metrics") or {}
    model_m, base_m = metrics.get("model") or {}, metrics.get("popularity_baseline") or {}
    export = summary.get("export") or {}
    gates = summary.get("gates") or {}
    published = (summary.get("published") or {}).get("this_date_published")
    cand = (summary.get("steps") or {}).get("candidates") or {}

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4f}"
        if isinstance(v, int):
            return f"{v:,}"
        return "n/a" if v is None else str(v)

    fields = [
        _field("Status", ":large_green_circle: succeeded" + ("" if published else " (not published)")),
        _field("Pipeline", f"`{_escape(pipeline)}` ({env})"),
        _field("Session date", dt),
        _field("Users / items", f"{fmt(data.get('users'))} / {fmt(data.get('items'))}"),
        _field("Interactions", fmt(data.get("interactions"))),
        _field("Model", f"`{(summary.get('model') or {}).get('version') or 'n/a'}`"),
        _field("nDCG@10", f"{fmt(model_m.get('ndcg@10'))} (popularity {fmt(base_m.get('ndcg@10'))})"),
        _field(
            "Gates",
            (
                ", ".join(f"{n} {'passed' if g.get('passed') else 'FAILED'}" for n, g in gates.items())
                or "none ran"
            )
            + f"; rows {fmt((export.get('stats') or {}).get('rows'))}",
        ),
        _field(
            "Candidates", f"{cand.get('shards_committed', 'n/a')}/{cand.get('shard_count', 'n/a')} shards"
        ),
        _field("Attempt", _link(attempt_url, attempt_id) if attempt_id else "n/a"),
    ]
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{pipeline} {dt} done ({env})"}},
        {"type": "section", "fields": fields},
    ]
    if report_url:
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": _link(report_url, "run report")}]}
        )
    return {"text": f"reco {pipeline} {dt} succeeded in {env}", "blocks": blocks}


def sla_message(
    *,
    pipeline: str,
    session_date: str,
    env: str,
    attempt_id: str | None = None,
    attempt_url: str | None = None,
    deadline: str | None = None,
) -> dict:
    fields = [
        _field("Status", ":large_orange_circle: still running (late)"),
        _field("Pipeline", f"`{_escape(pipeline)}`"),
        _field("Session date", session_date),
        _field("Environment", env),
        _field("Attempt", _link(attempt_url, attempt_id) if attempt_id else "n/a"),
    ]
    if deadline:
        fields.append(_field("Deadline", deadline))
    nxt = (
        f"`reco digdag status {attempt_id} --env {env}`" if attempt_id and env != "local" else "check the run"
    )
    return {
        "text": f"reco {pipeline} {session_date} is late in {env}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": f"{pipeline} {session_date} is late"}},
            {"type": "section", "fields": fields},
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": f"Next: {nxt}; consumers still read the previous publish"}
                ],
            },
        ],
    }


def as_text(message: dict) -> str:
    """A message as terminal text (no webhook configured)."""
    lines = []
    for block in message.get("blocks", []):
        if block["type"] == "header":
            lines.append(f"== {block['text']['text']} ==")
        elif block["type"] == "section":
            for f in block.get("fields", []):
                title, _, value = f["text"].partition("\n")
                lines.append(f"  {title.strip('*')}: {value}")
            if "text" in block:
                lines.append("  " + block["text"]["text"].replace("\n", "\n  "))
        elif block["type"] == "context":
            lines.extend("  " + e["text"] for e in block["elements"])
    return "\n".join(lines) or message.get("text", "")


class SlackNotifier:
    """Posts messages to one incoming webhook. ``send`` returns whether Slack accepted the message."""

    def __init__(
        self,
        webhook_url: str | None,
        *,
        max_attempts: int = 4,
        backoff_s: float = 1.0,
        max_wait_s: float = 30.0,
        timeout_s: float = 10.0,
        out: TextIO | None = None,
        sleep=None,
        session: requests.Session | None = None,
    ):
        self._url = webhook_url or None
        self.max_attempts = max(1, max_attempts)
        self.backoff_s = backoff_s
        self.max_wait_s = max_wait_s
        self.timeout_s = timeout_s
        self.out = out
        self.sleep = sleep or time.sleep
        self.session = session or requests.Session()

    @classmethod
    def from_env(cls, env_var: str = "SLACK_WEBHOOK_URL", **kwargs) -> SlackNotifier:
        return cls(os.environ.get(env_var) or None, **kwargs)

    @property
    def configured(self) -> bool:
        return self._url is not None

    def __repr__(self) -> str:  # never show the URL
        return f"SlackNotifier(configured={self.configured})"

    def _clean(self, text: str) -> str:
        """Mask the webhook (whole, or the path that requests' errors quote) and anything secret-looking."""
        if self._url:
            text = text.replace(self._url, "<webhook>")
            path = urlparse(self._url).path
            if len(path) > 1:
                text = text.replace(path, "/<webhook-path>")
        return redact(text)

    def send(self, message: dict) -> bool:
        if not self._url:
            out = self.out or sys.stdout
            out.write("[slack: no webhook set, printing instead]\n" + as_text(message) + "\n")
            out.flush()
            return False
        for attempt in range(1, self.max_attempts + 1):
            wait = self.backoff_s * 2 ** (attempt - 1)
            try:
                resp = self.session.post(self._url, json=message, timeout=self.timeout_s)
            except requests.RequestException as e:
                reason = f"{type(e).__name__}: {self._clean(str(e))}"
            else:
                if 200 <= resp.status_code < 300:
                    log.info("slack message sent", extra={"attempts": attempt})
                    return True
                reason = f"HTTP {resp.status_code} {self._clean(resp.text[:200])}"
                if resp.status_code == 429:
                    try:
                        wait = float(resp.headers.get("Retry-After", wait))
                    except ValueError:
                        pass
                elif resp.status_code < 500:
                    log.error(
                        f"slack webhook refused the message ({reason}); not retrying",
                        extra={"status": resp.status_code},
                    )
                    return False
            if attempt == self.max_attempts:
                log.error(
                    f"slack message not delivered ({reason}); giving up (the batch goes on)",
                    extra={"attempts": attempt},
                )
                return False
            wait = min(max(wait, 0.0), self.max_wait_s)
            log.warning(
                f"slack delivery failed ({reason}); retrying", extra={"attempt": attempt, "wait_s": wait}
            )
            self.sleep(wait)
        return False
