"""reco digdag run|check|push|start|status|logs|retry|kill|schedules, and reco backfill.

``run`` and ``check`` work on the .dig files here; the others talk to the environment's Digdag server (endpoint from
config/environments.yaml, overridden by --endpoint or $DIGDAG_ENDPOINT).
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime

from batch.cli import add_command, build_parser
from batch.config import ENVIRONMENTS, PROJECT_ROOT, load_environment, parse_date
from batch.digdag.backfill import local_backfill, plan_dates, server_backfill
from batch.digdag.check import check_paths
from batch.digdag.client import DigdagClient, build_archive, parse_headers
from batch.digdag.local import run_workflow
from batch.errors import EXIT_CHECK_FAILED, EXIT_FAILURE, ConfigError
from batch.runners.retry import INTERVAL_ENV as RETRY_INTERVAL_ENV

DIGDAG_DIR = PROJECT_ROOT / "digdag"


def _param(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"-p {text!r}: expected key=value")
    return key.strip(), value


def _server_args(p, *, env_default: str = "dev") -> None:
    p.add_argument(
        "--env",
        default=env_default,
        choices=[e for e in ENVIRONMENTS if e != "local"],
        help=f"environment whose Digdag server to use (default: {env_default})",
    )
    p.add_argument(
        "--endpoint",
        default=None,
        help="Digdag server URL (default: $DIGDAG_ENDPOINT, then the env's digdag.endpoint)",
    )
    p.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME: VALUE",
        help="extra HTTP header for every request (repeatable)",
    )


def register(sub) -> None:
    dd = add_command(sub, "digdag")
    cmds = dd.add_subparsers(dest="digdag_command", required=True, metavar="COMMAND")

    p = cmds.add_parser("run", help="run a workflow here with the local runner (Digdag semantics)")
    p.add_argument("workflow", help="path of a .dig file, e.g. digdag/demo.dig")
    p.add_argument("--session-date", required=True, help="session date, YYYY-MM-DD")
    p.add_argument("--env", default="local", choices=ENVIRONMENTS, help="value of ${env} (default: local)")
    p.add_argument(
        "-p",
        "--param",
        dest="params",
        action="append",
        default=[],
        type=_param,
        metavar="KEY=VALUE",
        help="session parameter (repeatable); an _export in the workflow wins, as in Digdag",
    )
    p.add_argument(
        "--no-retry-wait",
        action="store_true",
        help="retry at once instead of waiting (_retry intervals, and reco submit's --retry-interval in its tasks)",
    )
    p.set_defaults(func=cmd_run)

    p = cmds.add_parser("check", help="validate workflows: subset, variables, reco commands, pipelines")
    p.add_argument("paths", nargs="*", help=f"files or project directories (default: {DIGDAG_DIR})")
    p.add_argument("--env", default="local", choices=ENVIRONMENTS, help="value of ${env} while checking")
    p.set_defaults(func=cmd_check)

    p = cmds.add_parser(
        "push",
        help="push the digdag/ project to the env's server; pause its schedules unless "
        "the env has schedule_enabled",
    )
    _server_args(p)
    p.add_argument("--revision", default=None, help="revision name (default: a hash of the archive)")
    p.add_argument("--dry-run", action="store_true", help="build and list the archive, push nothing")
    p.set_defaults(func=cmd_push)

    p = cmds.add_parser("start", help="start an attempt of a pipeline's workflow for a session date")
    p.add_argument("--pipeline", required=True, help="pipeline = workflow name")
    p.add_argument("--session-date", required=True)
    _server_args(p)
    p.add_argument("--wait", action="store_true", help="poll until the attempt is done; exit 1 if it failed")
    p.add_argument("--poll", type=float, default=15.0, help="seconds between polls with --wait")
    p.set_defaults(func=cmd_start)

    for name, help_text, func in (
        ("status", "an attempt's status and tasks", "cmd_status"),
        ("logs", "the last lines of an attempt's failed task log (or --task's)", "cmd_logs"),
        ("retry", "retry the failed part of an attempt (resume: failed)", "cmd_retry"),
        ("kill", "kill a running attempt", "cmd_kill"),
    ):
        p = cmds.add_parser(name, help=help_text)
        p.add_argument("attempt_id")
        _server_args(p)
        if name == "logs":
            p.add_argument("--task", default=None, help="full task name (default: the failed task)")
            p.add_argument("--lines", type=int, default=60)
        if name == "retry":
            p.add_argument("--name", default=None, help="retryAttemptName (default: retry-<UTC time>)")
        p.set_defaults(func=globals()[func])

    p = cmds.add_parser("schedules", help="list schedules; pause, resume or skip one")
    _server_args(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--disable", metavar="WORKFLOW", help="pause the workflow's schedule")
    g.add_argument("--enable", metavar="WORKFLOW", help="resume the workflow's schedule")
    g.add_argument(
        "--skip-to",
        nargs=2,
        metavar=("WORKFLOW", "DATE"),
        help="skip sessions before DATE (next session = DATE 00:00 in the workflow timezone)",
    )
    p.set_defaults(func=cmd_schedules)

    p = add_command(sub, "backfill")
    p.add_argument("--pipeline", required=True)
    p.add_argument("--from", dest="date_from", required=True, help="first session date, YYYY-MM-DD")
    p.add_argument("--to", dest="date_to", required=True, help="last session date (inclusive)")
    p.add_argument(
        "--env",
        default="local",
        choices=ENVIRONMENTS,
        help="local: run each date here; others: the Digdag server's schedule backfill",
    )
    p.add_argument("--dry-run", action="store_true", help="show what would run, run nothing")
    p.add_argument("--name", default=None, help="attemptName of the backfill (default: backfill-<UTC time>)")
    p.add_argument("--endpoint", default=None)
    p.add_argument("--header", action="append", default=[], metavar="NAME: VALUE")
    p.set_defaults(func=cmd_backfill)


# -- local ---------------------------------------------------------------------------------------------------


def cmd_run(args) -> int:
    dt = parse_date(args.session_date, "--session-date")
    params = {"env": args.env, **dict(args.params)}
    kwargs = {}
    if args.no_retry_wait:  # Digdag's _retry waits here, and reco submit's retry waits in its tasks
        kwargs = {"sleep": lambda seconds: None, "environ": {**os.environ, RETRY_INTERVAL_ENV: "0"}}
    result = run_workflow(args.workflow, dt, params, **kwargs)
    return result.exit_code


def cmd_check(args) -> int:
    paths = args.paths or [str(DIGDAG_DIR)]

    report = check_paths(paths, parser=build_parser(), env=args.env)
    for p in report.problems:
        print(f"error: {p}", file=sys.stderr)
    print(
        f"checked {len(report.workflows)} workflow(s), {len(report.task_files)} task file(s), "
        f"{report.commands_checked} reco command(s): "
        + ("ok" if report.ok else f"{len(report.problems)} problem(s)")
    )
    return 0 if report.ok else EXIT_CHECK_FAILED


# -- server --------------------------------------------------------------------------------------------------


def _client(args):
    env_cfg = load_environment(args.env)
    return DigdagClient.for_environment(
        env_cfg, endpoint=args.endpoint, headers=parse_headers(args.header)
    ), env_cfg


def cmd_push(args) -> int:
    archive = build_archive(DIGDAG_DIR, env=args.env)
    print(f"archive: {len(archive.data):,} bytes, revision {archive.revision}")
    for name in archive.files:
        print(f"  {name}")
    if args.dry_run:
        return 0
    client, env_cfg = _client(args)
    project = client.push_project(env_cfg.digdag.project, archive.data, args.revision or archive.revision)
    print(f"pushed project {project.name} (id {project.id}) revision {project.revision} to {client.endpoint}")
    for s in client.schedules(project_id=project.id):
        if not env_cfg.schedule_enabled and s.disabled_at is None:
            s = client.disable_schedule(s.id)
            print(f"  schedule {s.workflow_name}: paused (schedule_enabled is false for {args.env})")
        else:
            state = (
                "PAUSED" if s.disabled_at else f"next session {s.next_schedule_time}, runs {s.next_run_time}"
            )
            print(f"  schedule {s.workflow_name}: {state}")
    return 0


def cmd_start(args) -> int:
    client, env_cfg = _client(args)
    dt = parse_date(args.session_date, "--session-date")
    project = client.find_project(env_cfg.digdag.project)
    wf = client.find_workflow(project.id, args.pipeline)
    session_time = wf.session_time(dt)
    attempt, created = client.start_attempt(wf.id, session_time)
    if created:
        print(f"started attempt {attempt.id} of {wf.name} session {attempt.session_time}")
    else:
        print(
            f"attempt {attempt.id} of {wf.name} session {attempt.session_time} already exists "
            f"({attempt.status}); not starting another"
        )
    if args.wait:
        attempt = client.wait(
            attempt.id,
            poll_s=args.poll,
            on_poll=lambda a: print(f"  attempt {a.id}: {a.status}", file=sys.stderr),
        )
        print(f"attempt {attempt.id}: {attempt.status}")
        return 0 if attempt.status == "success" else EXIT_FAILURE
    return 0


def cmd_status(args) -> int:
    client, _ = _client(args)
    a = client.attempt(args.attempt_id)
    print(
        f"attempt {a.id}: {a.status}  {a.project_name}/{a.workflow_name} session {a.session_time}"
        + (f" retry {a.retry_attempt_name}" if a.retry_attempt_name else "")
    )
    for t in client.tasks(a.id):
        print(f"  {t.state:<14} {t.full_name}" + (f"  {t.error_message}" if t.error_message else ""))
    return 0 if a.status in ("success", "running") else EXIT_FAILURE


def cmd_logs(args) -> int:
    client, _ = _client(args)
    if args.task:
        text = client.task_log(args.attempt_id, args.task)
        name = args.task
    else:
        task, text = client.failed_task_log_tail(args.attempt_id, lines=args.lines)
        if task is None:
            print(f"attempt {args.attempt_id} has no failed task", file=sys.stderr)
            return 0
        name = task.full_name
    print(f"== {name} (last {args.lines} lines) ==")
    print("\n".join(text.splitlines()[-args.lines :]))
    return 0


def cmd_retry(args) -> int:
    client, _ = _client(args)
    name = args.name or "retry-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    attempt, created = client.retry_failed(args.attempt_id, name)
    verb = "started" if created else "already exists:"
    print(
        f"{verb} attempt {attempt.id} (retry {attempt.retry_attempt_name}) resuming the failed tasks of "
        f"{args.attempt_id}"
    )
    return 0


def cmd_kill(args) -> int:
    client, _ = _client(args)
    if client.kill(args.attempt_id):
        print(f"kill requested for attempt {args.attempt_id}")
    else:
        print(f"attempt {args.attempt_id} is already done; nothing to kill")
    return 0


def cmd_schedules(args) -> int:
    client, env_cfg = _client(args)
    project = client.find_project(env_cfg.digdag.project)
    schedules = client.schedules(project_id=project.id)

    def by_name(name: str):
        for s in schedules:
            if s.workflow_name == name:
                return s
        raise ConfigError(
            f"no schedule for workflow {name!r} in project {project.name}",
            hint="known: " + (", ".join(s.workflow_name for s in schedules) or "none"),
        )

    if args.disable:
        s = client.disable_schedule(by_name(args.disable).id)
        print(f"paused schedule of {s.workflow_name}")
    elif args.enable:
        s = client.enable_schedule(by_name(args.enable).id)
        print(f"resumed schedule of {s.workflow_name}: next session {s.next_schedule_time}")
    elif args.skip_to:
        name, day = args.skip_to
        wf = client.find_workflow(project.id, name)
        s = client.skip_schedule(by_name(name).id, next_time=wf.session_time(parse_date(day, "DATE")))
        print(f"skipped {s.workflow_name} to next session {s.next_schedule_time}")
    else:
        for s in schedules:
            state = "PAUSED" if s.disabled_at else "active"
            print(
                f"{s.id:>6} {s.workflow_name:<24} {state:<7} next session {s.next_schedule_time}  "
                f"runs {s.next_run_time}"
            )
    return 0


def cmd_backfill(args) -> int:
    d1 = parse_date(args.date_from, "--from")
    d2 = parse_date(args.date_to, "--to")
    if args.env == "local":
        dates = plan_dates(d1, d2)
        workflow = DIGDAG_DIR / f"{args.pipeline}.dig"
        if not workflow.exists():
            raise ConfigError(
                f"{workflow}: no workflow for pipeline {args.pipeline!r}",
                hint="each pipeline has digdag/<pipeline>.dig (see docs/digdag.md)",
            )
        print(
            f"backfill {args.pipeline} locally: {len(dates)} session(s) {dates[0]} .. {dates[-1]}, oldest first"
        )
        if args.dry_run:
            for d in dates:
                print(f"  would run {workflow.relative_to(PROJECT_ROOT)} --session-date {d}")
            return 0
        results = local_backfill(workflow, dates)
        failed = [r for r in results if not r[1].success]
        for d, r in results:
            print(
                f"  {d}: {'ok' if r.success else 'FAILED at ' + str(r.failed_task)} (attempt {r.attempt_id})"
            )
        if failed:
            not_run = dates[len(results) :]
            if not_run:
                print(f"  not run: {', '.join(map(str, not_run))}")
            return EXIT_FAILURE
        return 0
    client, env_cfg = _client(args)
    result = server_backfill(
        client, env_cfg.digdag.project, args.pipeline, d1, d2, dry_run=args.dry_run, attempt_name=args.name
    )
    print(result.text)
    return 0
