"""reco report | reco show published | reco metrics: the quality side of a pipeline, for people.

- ``reco report --pipeline P --date D [--env E] [--out PATH]`` writes the run report (one self-contained HTML
  file) and prints where it went.
- ``reco show published --pipeline P [--env E]`` prints the latest published date and model version (registered
  in batch/cli/pipeline.py next to ``show summary``; implemented here).
- ``reco metrics --pipeline P [--env E] [--since D] [--until D]`` prints the metric store's rows (deduplicated).
"""

from __future__ import annotations

import json
import sys
from datetime import date, timedelta

from batch import metrics_store as ms
from batch.cli import add_command
from batch.config import ENVIRONMENTS, load_environment, load_pipeline, parse_date
from batch.errors import ConfigError, InputDataError
from batch.report import write_report
from batch.storage import ArtifactStore


def register(sub) -> None:
    p = add_command(sub, "report")
    p.add_argument("--pipeline", required=True)
    p.add_argument("--date", required=True, help="session date, YYYY-MM-DD")
    p.add_argument("--env", default="local", choices=ENVIRONMENTS)
    p.add_argument(
        "--out",
        default=None,
        help="file path or fsspec URL (default: <artifact_root>/reports/<pipeline>/<date>/index.html)",
    )
    p.set_defaults(func=cmd_report)

    p = add_command(sub, "metrics")
    p.add_argument("--pipeline", required=True)
    p.add_argument("--env", default="local", choices=ENVIRONMENTS)
    p.add_argument("--since", default=None, help="first date (default: 30 days before --until)")
    p.add_argument("--until", default=None, help="last date (default: the latest published date, else today)")
    p.add_argument("--step", default=None)
    p.add_argument("--metric", default=None)
    p.add_argument("--format", choices=("table", "csv", "jsonl"), default="table")
    p.set_defaults(func=cmd_metrics)


def add_show_published(show) -> None:
    """``reco show published``: called from batch/cli/pipeline.py's ``show`` group."""
    p = show.add_parser("published", help="the latest published date and model version")
    p.add_argument("--pipeline", required=True)
    p.add_argument("--env", default="local", choices=ENVIRONMENTS)
    p.add_argument("--json", action="store_true", help="print the publish and promotion records as JSON")
    p.set_defaults(func=cmd_show_published)


def cmd_report(args) -> int:
    env = load_environment(args.env)
    pipeline = load_pipeline(args.pipeline, args.env)
    dt = parse_date(args.date)
    store = ArtifactStore(env.resolved_artifact_root())
    if not any(store.exists(pipeline.name, ds, dt) for ds in ("interactions", "model", "export")):
        raise ConfigError(
            f"nothing has run for {pipeline.name} on {dt} under {store.root_url}",
            hint=f"reco run --pipeline {pipeline.name} --date {dt}",
        )
    print(write_report(pipeline, env, dt, out=args.out))
    return 0


def cmd_show_published(args) -> int:
    env = load_environment(args.env)
    pipeline = load_pipeline(args.pipeline, args.env)
    store = ArtifactStore(env.resolved_artifact_root())
    latest = store.latest(pipeline.name)
    if latest is None:
        raise InputDataError(
            f"{pipeline.name}: nothing published yet under {store.root_url}",
            hint=f"reco run --pipeline {pipeline.name} --date YYYY-MM-DD --env {env.name}",
        )
    model = store.promoted_model(pipeline.name)
    if args.json:
        print(
            json.dumps(
                {"latest": store.display_record(latest), "promoted_model": store.display_record(model)},
                indent=2,
                default=str,
            )
        )
        return 0
    lines = [
        f"pipeline:       {pipeline.name} ({env.name})",
        f"published date: {latest['dt']}",
        f"model version:  {latest['model_version']}",
        f"published at:   {latest.get('published_at')}",
        f"rows / users:   {(latest.get('stats') or {}).get('rows')} / {(latest.get('stats') or {}).get('users')}",
    ]
    lines += [f"file:           {store.display(v)}" for v in (latest.get("files") or {}).values()]
    lines += [f"table:          {t}" for t in (latest.get("tables") or {})]
    if model and model.get("model_version") != latest["model_version"]:
        lines.append(f"promoted model: {model.get('model_version')} (differs from the latest publish's)")
    print("\n".join(lines))
    return 0


def cmd_metrics(args) -> int:
    env = load_environment(args.env)
    pipeline = load_pipeline(args.pipeline, args.env)
    if args.until:
        until = parse_date(args.until, "--until")
    else:
        latest = ArtifactStore(env.resolved_artifact_root()).latest(pipeline.name)
        until = date.fromisoformat(latest["dt"]) if latest else date.today()
    since = parse_date(args.since, "--since") if args.since else until - timedelta(days=30)
    df = ms.history(env, pipeline.checks.anomaly.table, pipeline.name, since=since, until=until)
    if args.step:
        df = df[df["step"] == args.step]
    if args.metric:
        df = df[df["metric"] == args.metric]
    if df.empty:
        print(f"no metrics for {pipeline.name} between {since} and {until}", file=sys.stderr)
        return 1
    if args.format == "csv":
        df.to_csv(sys.stdout, index=False)
    elif args.format == "jsonl":
        df.assign(dt=df["dt"].astype(str), recorded_at=df["recorded_at"].astype(str)).to_json(
            sys.stdout, orient="records", lines=True
        )
    else:
        print(df.drop(columns=["pipeline"]).to_string(index=False))
    return 0
