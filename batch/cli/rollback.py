"""reco rollback | reco show history: put an earlier publish back in service; what served when.

- ``reco rollback --pipeline P --to DATE [--reason TEXT] [--dry-run] [--pin] [--lock-timeout S]``: the publish of
  DATE (still within ``export.retention_days``, its files whole) serves again: serving record, promoted model and
  warehouse serving view move together (batch.serving); announced on Slack; recorded in the ledger. ``--pin``
  keeps it in service (later runs still run and record) until ``reco rollback --pipeline P --unpin``.
- ``reco show history --pipeline P [--since D] [--format table|json]``: the ledger (registered in
  batch/cli/pipeline.py's ``show`` group, next to ``show published``).

Exit codes: 0 done (or nothing to unpin); 65 a date with no publish, beyond retention, files missing or corrupt
(named), an unknown pipeline; 75 a run of the same pipeline is publishing (or another rollback), after
``--lock-timeout`` seconds.
"""

from __future__ import annotations

import json
import sys

from batch import ledger, serving
from batch.alerts.slack import SlackNotifier, rollback_message
from batch.cli import add_command
from batch.cli.common import load_checked_pipeline
from batch.config import ENVIRONMENTS, load_environment, parse_date
from batch.errors import ConfigError
from batch.storage import ArtifactStore


def register(sub) -> None:
    p = add_command(sub, "rollback")
    p.add_argument("--pipeline", required=True, help="pipeline name (config/pipelines/NAME.yaml)")
    p.add_argument("--env", default="local", choices=ENVIRONMENTS, help="environment (default: local)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", metavar="DATE", help="the published session date to restore, YYYY-MM-DD")
    target.add_argument(
        "--unpin", action="store_true", help="let later publishes replace the pinned one again"
    )
    p.add_argument("--reason", default=None, help="why (goes to the ledger and Slack)")
    p.add_argument("--pin", action="store_true", help="keep the restored publish in service until --unpin")
    p.add_argument("--dry-run", action="store_true", help="check the target and print the plan; move nothing")
    p.add_argument(
        "--lock-timeout",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for a run of the pipeline that is publishing (default 0: exit 75 at once)",
    )
    p.set_defaults(func=cmd_rollback)


def add_show_history(show) -> None:
    """``reco show history``: called from batch/cli/pipeline.py's ``show`` group."""
    p = show.add_parser("history", help="the ledger: every publish, refusal, rollback, pin and unpin")
    p.add_argument("--pipeline", required=True)
    p.add_argument("--env", default="local", choices=ENVIRONMENTS)
    p.add_argument("--since", default=None, help="first day, YYYY-MM-DD (default: everything)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=cmd_show_history)


def _open(args):
    pipeline = load_checked_pipeline(args.pipeline, args.env)  # an unknown pipeline: ConfigError naming it
    env = load_environment(args.env)
    store = ArtifactStore(env.resolved_artifact_root(), retention_days=pipeline.export.retention_days)
    return pipeline, env, store


def _desc(record: dict | None) -> str:
    if not record:
        return "nothing"
    return f"{record.get('dt')} (model {record.get('model_version')}, run {record.get('run_id')})"


def _announce(env, message: dict) -> None:
    try:
        SlackNotifier.from_env(env.slack.webhook_env, out=sys.stderr).send(message)
    except Exception as e:  # the rollback is done; the announcement is best effort
        print(f"warning: Slack announcement not sent: {type(e).__name__}: {e}", file=sys.stderr)


def cmd_rollback(args) -> int:
    pipeline, env, store = _open(args)
    if args.unpin:
        if args.pin or args.dry_run:
            raise ConfigError("--unpin takes no --pin or --dry-run")
        entry = serving.unpin(store, env, pipeline, reason=args.reason, lock_timeout_s=args.lock_timeout)
        if entry is None:
            print(f"{pipeline.name}: nothing is pinned; nothing changed", file=sys.stderr)
            return 0
        current = (store.serving(pipeline.name) or {}).get("publish")
        _announce(
            env,
            rollback_message(
                pipeline=pipeline.name,
                env=env.name,
                event="unpin",
                restored=current,
                replaced=None,
                actor=entry["actor"],
                reason=args.reason,
                pinned=False,
            ),
        )
        print(json.dumps({"unpinned": True, "serving": _desc(current), "ledger_entry": entry["id"]}))
        return 0
    to = parse_date(args.to, "--to")
    if args.dry_run:
        plan = serving.plan_rollback(store, pipeline, to, pin=args.pin)
        print(
            json.dumps(
                {
                    "dry_run": True,
                    "pipeline": pipeline.name,
                    "serving_now": _desc(plan.current),
                    "would_serve": _desc(plan.target),
                    "model": plan.model.get("model_version"),
                    "files": store.display_record(plan.target).get("files"),
                    "views": serving.warehouse_state(plan.target)["views"],
                    "pin": args.pin,
                },
                indent=2,
            )
        )
        return 0
    plan, entry = serving.rollback(
        store, env, pipeline, to, reason=args.reason, pin=args.pin, lock_timeout_s=args.lock_timeout
    )
    _announce(
        env,
        rollback_message(
            pipeline=pipeline.name,
            env=env.name,
            event=entry["event"],
            restored=plan.target,
            replaced=plan.current,
            actor=entry["actor"],
            reason=args.reason,
            pinned=args.pin,
        ),
    )
    print(
        json.dumps(
            {
                "rolled_back": True,
                "pipeline": pipeline.name,
                "serving": _desc(plan.target),
                "replaced": _desc(plan.current),
                "pinned": args.pin,
                "ledger_entry": entry["id"],
            }
        )
    )
    return 0


HISTORY_COLUMNS = ("at", "event", "dt", "model_version", "run_id", "actor", "detail")


def _detail(e: dict) -> str:
    if e["event"] == "publish":
        figures = e.get("figures") or {}
        base = f"rows {figures.get('rows')}, users {figures.get('users')}"
        return base if e.get("moved", True) else f"{base}; not in service: {e.get('reason')}"
    if e["event"] == "refused":
        return f"{e.get('gate')}: {e.get('reason')}"
    if e["event"] in ("rollback", "pin"):
        replaced = e.get("replaced") or {}
        return (
            f"replaced {replaced.get('dt')} ({replaced.get('model_version')})"
            + ("; pinned" if e.get("pinned") else "")
            + (f"; reason: {e['reason']}" if e.get("reason") else "")
        )
    return f"reason: {e['reason']}" if e.get("reason") else ""


def cmd_show_history(args) -> int:
    pipeline, _env, store = _open(args)
    since = parse_date(args.since, "--since") if args.since else None
    entries = ledger.entries(store, pipeline.name, since=since)
    if args.format == "json":
        print(json.dumps(entries, indent=2, default=str))
        return 0
    if not entries:
        print(
            f"{pipeline.name}: no ledger entries under {store.root_url}"
            + (f" since {since}" if since else ""),
            file=sys.stderr,
        )
        return 0
    rows = [[str(e.get(c) if c != "detail" else _detail(e)) for c in HISTORY_COLUMNS] for e in entries]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(HISTORY_COLUMNS[:-1])]
    out = ["  ".join(c.ljust(w) for c, w in zip(HISTORY_COLUMNS, widths, strict=False)) + "  detail"]
    out += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=False)) + "  " + r[-1] for r in rows]
    state = store.serving(pipeline.name) or {}
    if state.get("publish"):
        pin = state.get("pinned")
        out.append(
            f"in service: {_desc(state['publish'])}"
            + (f", pinned by {pin.get('by')} at {pin.get('at')}" if pin else "")
        )
    print("\n".join(out))
    return 0
