"""reco notify success|failure|sla: the Slack messages the Digdag workflows send (digdag/tasks/daily.dig).

Never fails the batch: a message that cannot be built completely goes out with what is known, and a Slack
outage ends in a log line and exit code 0.

One message per failure: ``failure --attempt A`` sends nothing when a gate already alerted the failure that
stopped attempt A (its own, more precise message; batch/alerts/sent.py), only a log line saying so.
"""

from __future__ import annotations

import logging
import os

from batch.alerts import sent
from batch.alerts.slack import SlackNotifier, failure_message, sla_message, success_message
from batch.cli import add_command
from batch.config import ENVIRONMENTS, load_environment, load_pipeline, parse_date
from batch.digdag.client import DigdagClient
from batch.digdag.local import attempts_dir, read_attempt_record
from batch.logs import redact
from batch.storage import ArtifactStore
from batch.summary import build_summary

log = logging.getLogger("reco.notify")


def register(sub) -> None:
    notify = add_command(sub, "notify")
    kinds = notify.add_subparsers(dest="kind", required=True, metavar="KIND")
    for kind, help_text in (
        ("success", "the day's key figures"),
        ("failure", "what failed and the error's last lines"),
        ("sla", "the batch is still running past its SLA"),
    ):
        p = kinds.add_parser(kind, help=help_text)
        p.add_argument("--pipeline", required=True)
        p.add_argument("--date", required=True, help="session date, YYYY-MM-DD")
        p.add_argument("--env", default="local", choices=ENVIRONMENTS)
        p.add_argument(
            "--attempt",
            default=None,
            help="Digdag attempt id (${attempt_id}): linked, and for a "
            "failure used to find the failed task and its log",
        )
        if kind == "failure":
            p.add_argument("--task", default=None, help="failed task (default: looked up from --attempt)")
            p.add_argument(
                "--error",
                default=None,
                help="error message (default: $RECO_ERROR_MESSAGE, which the workflow sets from "
                "${error.message})",
            )
        p.add_argument(
            "--webhook-env",
            default=None,
            help="environment variable holding the webhook URL (default: the env's slack.webhook_env)",
        )
        p.set_defaults(func=cmd_notify)


def attempt_url(env_cfg, attempt_id: str | None) -> str | None:
    if not attempt_id:
        return None
    if env_cfg.name == "local":
        return (attempts_dir() / f"{attempt_id}.json").as_uri()
    endpoint = os.environ.get("DIGDAG_ENDPOINT") or env_cfg.digdag.endpoint
    return f"{endpoint.rstrip('/')}/attempts/{attempt_id}" if endpoint else None


def failed_task_of(env_cfg, attempt_id: str) -> tuple[str | None, str | None]:
    """(failed task, last lines of its log) of an attempt; (None, None) when it cannot be found."""
    if env_cfg.name == "local":
        record = read_attempt_record(attempt_id) or {}
        for t in record.get("tasks", []):
            if t.get("state") == "error" and not t.get("isGroup"):
                return t["fullName"], "\n".join(t.get("tail") or [])
        return None, None

    client = DigdagClient.for_environment(env_cfg, retries=1, timeout_s=10)
    task, tail = client.failed_task_log_tail(attempt_id)
    return (task.full_name if task else None), tail


def already_alerted(env_cfg, pipeline: str, dt, attempt_id: str) -> dict | None:
    """The gate alert recorded for this attempt's failure, if any (never raises: when in doubt, alert)."""
    try:
        store = ArtifactStore(env_cfg.resolved_artifact_root())
        alerts = sent.alerts_for(store, pipeline, dt, attempt_id)
        if alerts and env_cfg.name == "local":
            # local attempt ids count up per $RECO_HOME: a record older than this attempt is someone else's
            started = min(
                (t.get("startedAt") or "" for t in (read_attempt_record(attempt_id) or {}).get("tasks", [])),
                default="",
            )
            alerts = [
                a for a in alerts if started and a.get("alerted_at", "") >= started.replace("Z", "+00:00")
            ]
        return alerts[-1] if alerts else None
    except Exception as e:
        log.warning("could not read the alert record; alerting", extra={"error": redact(str(e))})
        return None


def cmd_notify(args) -> int:
    dt = parse_date(args.date)
    env_cfg = load_environment(args.env)
    if args.kind == "failure" and args.attempt:
        alerted = already_alerted(env_cfg, args.pipeline, dt, args.attempt)
        if alerted:
            log.info(
                f"not sending a failure message: the {alerted.get('source')} already alerted this failure "
                f"({alerted.get('summary')})",
                extra={"attempt": args.attempt, "alerted_at": alerted.get("alerted_at")},
            )
            return 0
    notifier = SlackNotifier.from_env(args.webhook_env or env_cfg.slack.webhook_env)
    url = attempt_url(env_cfg, args.attempt)
    if args.kind == "failure":
        task, tail = args.task, None
        if args.attempt and not task:
            try:
                task, tail = failed_task_of(env_cfg, args.attempt)
            except Exception as e:  # the alert matters more than its details
                log.warning("could not look up the failed task", extra={"error": redact(str(e))})
        error = args.error if args.error is not None else os.environ.get("RECO_ERROR_MESSAGE")
        message = failure_message(
            pipeline=args.pipeline,
            session_date=dt.isoformat(),
            env=args.env,
            task=task,
            error=error,
            log_tail=tail,
            attempt_id=args.attempt,
            attempt_url=url,
        )
    elif args.kind == "sla":
        message = sla_message(
            pipeline=args.pipeline,
            session_date=dt.isoformat(),
            env=args.env,
            attempt_id=args.attempt,
            attempt_url=url,
        )
    else:
        summary: dict = {"pipeline": args.pipeline, "date": dt.isoformat()}
        try:
            pipeline = load_pipeline(args.pipeline, args.env)
            store = ArtifactStore(env_cfg.resolved_artifact_root())
            summary = build_summary(store, pipeline.name, dt, pipeline.candidates.shard_count)
        except Exception as e:
            log.warning(
                "summary unavailable; sending the message without figures", extra={"error": redact(str(e))}
            )
        # a public URL when the environment serves its reports; else where the report file is
        report = env_cfg.slack.report_base_url
        report_url = f"{report.rstrip('/')}/{args.pipeline}/{dt}" if report else summary.get("report")
        message = success_message(
            summary, env=args.env, attempt_id=args.attempt, attempt_url=url, report_url=report_url
        )
    notifier.send(message)
    return 0
