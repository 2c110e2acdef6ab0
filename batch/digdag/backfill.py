"""reco backfill: a range of session dates, oldest first.

Cloud: Digdag's schedule backfill API takes ``fromTime`` (the first session time, in the workflow timezone) and a
``count`` of sessions; it only creates sessions before the schedule's next schedule time, at most 100 of them, and
runs them one after another. This module turns ``--from D1 --to D2`` into those two numbers and refuses ranges the
server would cut short or refuse, before asking it. Locally each date runs through the local .dig runner.

Every date reads only its own window (the steps take ``--date``), and a backfill attempt has its own name, so
re-running a date is safe: it writes a new run and moves that date's commit markers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from batch.config import PROJECT_ROOT
from batch.digdag.local import run_workflow
from batch.digdag.workflow import BACKFILL_LIMIT, Schedule, load_workflow, parse_schedule
from batch.errors import ConfigError


class BackfillError(ConfigError):
    pass


def plan_dates(d1: date, d2: date) -> list[date]:
    if d1 > d2:
        raise BackfillError(
            f"--from {d1} is after --to {d2}", hint="dates run oldest first: --from OLDEST --to NEWEST"
        )
    return [d1 + timedelta(days=i) for i in range((d2 - d1).days + 1)]


@dataclass(frozen=True)
class BackfillPlan:
    from_time: datetime
    count: int
    sessions: list[datetime]


def plan_server_backfill(
    schedule: Schedule,
    timezone: str,
    d1: date,
    d2: date,
    next_schedule_time: datetime | None,
    *,
    limit: int = BACKFILL_LIMIT,
) -> BackfillPlan:
    """fromTime and count for the sessions of dates D1..D2 (inclusive) in ``timezone``; refuses what Digdag would
    cut short (sessions at or after the schedule's next schedule time) or refuse (more than ``limit``)."""
    plan_dates(d1, d2)
    tz = ZoneInfo(timezone)
    start = datetime.combine(d1, time.min, tzinfo=tz)
    end = datetime.combine(d2 + timedelta(days=1), time.min, tzinfo=tz)
    sessions = schedule.sessions_between(start, end)
    if not sessions:
        raise BackfillError(f"no session of schedule {schedule.describe()} falls between {d1} and {d2}")
    if len(sessions) > limit:
        raise BackfillError(
            f"{d1}..{d2} is {len(sessions)} sessions; Digdag backfills at most {limit} at a time",
            hint=f"split the range, e.g. --to {sessions[limit - 1].date()} first",
        )
    if next_schedule_time is not None and sessions[-1] >= next_schedule_time:
        allowed = [s for s in sessions if s < next_schedule_time]
        last_ok = allowed[-1].date() if allowed else None
        raise BackfillError(
            f"--to {d2} reaches the schedule's next session {next_schedule_time.astimezone(tz).isoformat()}: "
            "Digdag only backfills sessions before it (those run on schedule)",
            hint=(f"use --to {last_ok}" if last_ok else "nothing to backfill yet")
            + "; or start one date with "
            "reco digdag start",
        )
    return BackfillPlan(sessions[0], len(sessions), sessions)


@dataclass
class BackfillResult:
    text: str
    plan: BackfillPlan
    attempts: list = field(default_factory=list)


def _server_schedule(workflow_config: dict, name: str) -> Schedule:
    if isinstance(workflow_config.get("schedule"), dict):
        return parse_schedule(workflow_config["schedule"], file=f"<server workflow {name}>")
    local = PROJECT_ROOT / "digdag" / f"{name}.dig"
    if local.exists():
        wf = load_workflow(local)
        if wf.schedule is not None:
            return wf.schedule
    raise BackfillError(
        f"workflow {name} has no schedule: to backfill it, give it one (schedule: daily>: ...)"
    )


def server_backfill(
    client,
    project_name: str,
    pipeline: str,
    d1: date,
    d2: date,
    *,
    dry_run: bool = False,
    attempt_name: str | None = None,
) -> BackfillResult:
    project = client.find_project(project_name)
    wf = client.find_workflow(project.id, pipeline)
    schedules = client.schedules(project_id=project.id, workflow=pipeline)
    schedules = [s for s in schedules if s.workflow_name == pipeline] or schedules
    if not schedules:
        raise BackfillError(
            f"workflow {pipeline} in project {project.name} has no schedule on the server",
            hint="the workflow needs schedule: and a push; or run dates with reco digdag start",
        )
    sched = schedules[0]
    plan = plan_server_backfill(
        _server_schedule(wf.config, pipeline), wf.timezone, d1, d2, sched.next_schedule
    )
    name = attempt_name or "backfill-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    lines = [
        f"backfill {pipeline} ({project.name}): {plan.count} session(s) from {plan.from_time.isoformat()}, "
        f"attempt name {name}" + (" [dry run]" if dry_run else ""),
        *(f"  session {s.isoformat()}" for s in plan.sessions),
    ]
    if sched.disabled_at:
        lines.append("  note: the schedule is paused; backfill attempts still run")
    attempts = client.backfill(sched.id, plan.from_time, name, count=plan.count, dry_run=dry_run)
    if dry_run:
        lines.append(f"the server would start {len(attempts)} attempt(s); nothing started")
    else:
        lines.append(
            f"started {len(attempts)} attempt(s), run one after another: "
            + ", ".join(a.id for a in attempts if a.id)
        )
    return BackfillResult("\n".join(lines), plan, attempts)


def local_backfill(
    workflow: Path, dates: list[date], *, runner: Callable | None = None, params: dict | None = None
):
    """Run each date oldest first; stop at the first failure. Returns [(date, AttemptResult)]."""
    run = runner or run_workflow
    results = []
    for d in sorted(dates):
        result = run(workflow, d, {"env": "local", **(params or {})})
        results.append((d, result))
        if not result.success:
            break
    return results
