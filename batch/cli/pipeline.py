"""reco run | step | show | data | demo: the daily batch on whatever warehouse and storage the env names."""

from __future__ import annotations

import argparse
import json
import logging
import os
import posixpath
import sys
from datetime import date

import pyarrow.parquet as pq

from batch.cli import add_command
from batch.cli.common import add_pipeline_args, context_from_args, step_name
from batch.cli.quality import add_show_published
from batch.cli.rollback import add_show_history
from batch.config import PROJECT_ROOT, load_environment, load_pipeline, parse_date, reco_home
from batch.context import StepContext
from batch.data import SyntheticSpec, generate, import_movielens, write_source
from batch.digdag.local import run_workflow
from batch.errors import ConfigError, InputDataError
from batch.execute import run_date, run_step
from batch.graph import GRAPH
from batch.locks import RunLock, run_lock_url
from batch.storage import PUBLISH, ArtifactStore, Committed, new_run_id
from batch.summary import build_summary, gates_line
from batch.timings import process_age_s
from batch.warehouse import open_warehouse

log = logging.getLogger("reco.run")


def register(sub) -> None:
    p = add_command(sub, "run")
    add_pipeline_args(p)
    p.add_argument(
        "--lock-timeout",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for another run of the same pipeline and date to finish (default 0: exit 75 "
        "at once)",
    )
    p.set_defaults(func=cmd_run)

    p = add_command(sub, "step")
    p.add_argument(
        "name", metavar="STEP", type=step_name, help="a step of the graph: " + ", ".join(GRAPH.names())
    )
    add_pipeline_args(p)
    p.add_argument(
        "--shard-index",
        type=int,
        default=None,
        help="shard of users/items to do (default: $JOB_COMPLETION_INDEX, else 0)",
    )
    p.add_argument("--shard-count", type=int, default=None, help="number of shards (default: the pipeline's)")
    p.add_argument("--run-id", default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_step)

    show = add_command(sub, "show").add_subparsers(dest="what", required=True, metavar="WHAT")
    p = show.add_parser(
        "recommendations",
        help="the publish in service, or a date's publish (all users, or one); says which run it shows",
    )
    add_pipeline_args(p, date=False, overrides=False)
    p.add_argument("--date", default=None, help="a session date's publish (default: the publish in service)")
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--unpublished", action="store_true", help="the date's latest staged export, published or not"
    )
    which.add_argument("--run", default=None, metavar="RUN_ID", help="one run of the date's export")
    p.add_argument("--user", default=None)
    p.add_argument("--format", choices=("table", "csv", "jsonl"), default="table")
    p.set_defaults(func=cmd_show_recommendations)
    p = show.add_parser("summary", help="JSON: counts, metrics, timings, parameters of one date")
    add_pipeline_args(p, overrides=False)
    p.set_defaults(func=cmd_show_summary)

    add_show_published(show)  # reco show published: latest published date and model version
    add_show_history(show)  # reco show history: the ledger (batch/cli/rollback.py)

    data = add_command(sub, "data").add_subparsers(dest="what", required=True, metavar="WHAT")
    p = data.add_parser("generate", help="seeded synthetic traffic (replaces the pipeline's source tables)")
    add_pipeline_args(p, date=False, overrides=False)
    p.add_argument("--users", type=int, default=5000)
    p.add_argument("--items", type=int, default=2000)
    p.add_argument("--days", type=int, default=35)
    p.add_argument("--end-date", default="2026-11-21", help="last day of traffic (YYYY-MM-DD)")
    p.add_argument("--events-per-user", type=float, default=40.0)
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(func=cmd_data_generate)
    p = data.add_parser("import-movielens", help="append a MovieLens ratings.csv as events")
    p.add_argument("path")
    add_pipeline_args(p, date=False, overrides=False)
    p.set_defaults(func=cmd_data_import)

    p = add_command(sub, "demo")
    p.add_argument("--date", default="2026-11-21")
    p.add_argument("--pipeline", default="demo")
    p.set_defaults(func=cmd_demo)


# -- running -------------------------------------------------------------------------------------------------


def run_all(args: argparse.Namespace, say=print) -> StepContext:
    run_id = new_run_id()
    base = context_from_args(args, run_id=run_id)
    count = base.pipeline.candidates.shard_count

    def ctx_for_shard(index: int) -> StepContext:
        return StepContext(
            pipeline=base.pipeline,
            env=base.env,
            session_date=base.session_date,
            shard_index=index,
            shard_count=count,
            overrides=base.overrides,
            run_id=run_id,
        )

    say(
        f"reco run {base.name} {base.session_date} (env {base.env.name}, run {run_id})"
        + (f" overrides: {dict(base.overrides)}" if base.overrides else "")
    )
    run_date(ctx_for_shard, say)
    return base


def cmd_run(args) -> int:
    env = load_environment(args.env)
    dt = parse_date(args.date)
    lock = RunLock(
        run_lock_url(env.resolved_artifact_root(), args.pipeline, dt), what=f"reco run {args.pipeline} {dt}"
    )
    with lock.acquire(timeout_s=args.lock_timeout):
        ctx = run_all(args, say=log.info)
    print(
        json.dumps(
            build_summary(ctx.store, ctx.name, ctx.session_date, ctx.shard_count), indent=2, default=str
        )
    )
    return 0


def cmd_step(args) -> int:
    index = args.shard_index
    if index is None:
        index = int(os.environ.get("JOB_COMPLETION_INDEX", "0"))
    step = GRAPH.step(args.name)
    ctx = context_from_args(args, shard_index=index, shard_count=args.shard_count, run_id=args.run_id)
    if not step.sharded and (args.shard_count or 1) > 1:
        raise ConfigError(f"step {args.name} is not sharded: drop --shard-index/--shard-count")
    if not step.is_enabled(ctx.pipeline):
        print(f"step {args.name} skipped: not enabled for pipeline {ctx.name}", file=sys.stderr)
        return 0
    result = run_step(step, ctx, startup_s=process_age_s())
    print(
        json.dumps(
            {
                "step": args.name,
                "pipeline": ctx.name,
                "date": str(ctx.session_date),
                "shard": list(ctx.shard) if step.sharded else None,
                **result,
            },
            default=str,
        )
    )
    return 0


# -- showing -------------------------------------------------------------------------------------------------


def _store(args) -> tuple[ArtifactStore, object]:
    env = load_environment(args.env)
    pipeline = load_pipeline(args.pipeline, args.env)
    return ArtifactStore(env.resolved_artifact_root()), pipeline


def cmd_show_summary(args) -> int:
    store, pipeline = _store(args)
    dt = parse_date(args.date)
    summary = build_summary(store, pipeline.name, dt, pipeline.candidates.shard_count)
    if len(summary["steps"]) == 0:
        raise ConfigError(
            f"nothing has run for {pipeline.name} on {dt} under {store.root_url}",
            hint=f"reco run --pipeline {pipeline.name} --date {dt}",
        )
    print(json.dumps(summary, indent=2, default=str))
    return 0


COLUMNS = ["user_id", "item_id", "rank", "score", "source", "model_version", "dt"]


def _export_to_show(store: ArtifactStore, pipeline: str, args) -> tuple[Committed, str]:
    """The export partition to print and the line that says which one it is: the publish in service unless
    asked for a date's publish, its unpublished export (--unpublished) or one run (--run)."""
    if (args.unpublished or args.run) and not args.date:
        raise ConfigError("--unpublished and --run need --date")
    state = store.serving(pipeline) or {}
    in_service = state.get("publish")
    if args.date is None:
        if in_service is None:
            raise InputDataError(
                f"{pipeline}: nothing is published under {store.root_url}",
                hint=f"reco run --pipeline {pipeline} --date YYYY-MM-DD, or --date D --unpublished for a staged "
                "export",
            )
        record = in_service
        line = f"showing the publish in service: {record['dt']} run {record.get('run_id')}"
        return _published_export(store, pipeline, record), line
    dt = parse_date(args.date)
    if args.unpublished or args.run:
        export = store.committed(pipeline, "export", dt, step="export")
        if args.run and args.run not in (export.run_id, _record_run(store, pipeline, dt)):
            raise InputDataError(
                f"{pipeline} {dt}: no kept export run {args.run!r} (committed: {export.run_id}; "
                f"published: {_record_run(store, pipeline, dt) or 'none'})",
                hint=f"reco show history --pipeline {pipeline}",
            )
        if args.run and args.run != export.run_id:
            record = store.pointer_record(pipeline, PUBLISH, dt.isoformat())
            return _published_export(store, pipeline, record), f"showing run {args.run} of {dt} (published)"
        published = _record_run(store, pipeline, dt) == export.run_id
        line = (
            f"showing the {'published' if published else 'UNPUBLISHED'} export of {dt}: run {export.run_id}"
        )
        return export, line
    record = store.pointer_record(pipeline, PUBLISH, dt.isoformat())
    if record is None:
        raise InputDataError(
            f"{pipeline}: the export of {dt} is not published (its publish check failed or it never reached the "
            "publish step)",
            hint=f"reco show recommendations --pipeline {pipeline} --date {dt} --unpublished",
        )
    serving_note = (
        "in service"
        if in_service
        and in_service["dt"] == record["dt"]
        and in_service.get("run_id") == record.get("run_id")
        else f"not in service; in service: {in_service['dt'] if in_service else 'nothing'}"
    )
    line = f"showing the publish of {dt}: run {record.get('run_id')} ({serving_note})"
    return _published_export(store, pipeline, record), line


def _record_run(store: ArtifactStore, pipeline: str, dt: date) -> str | None:
    record = store.pointer_record(pipeline, PUBLISH, dt.isoformat())
    return record and _export_run_id(record)


def _export_run_id(record: dict) -> str:
    return record.get("export_run_id") or posixpath.basename(record["run_dir"].rstrip("/")).removeprefix(
        "run="
    )


def _published_export(store: ArtifactStore, pipeline: str, record: dict) -> Committed:
    """The files a publish record names, checked against the checksums it carries (sizes of older records)."""
    run_dir = store.resolve(record["run_dir"])
    files = record.get("checksums") or {
        name: store.fs.size(store.resolve(path)) for name, path in (record.get("files") or {}).items()
    }
    marker = {"run_id": _export_run_id(record), "files": files}
    return Committed(store.fs, posixpath.dirname(run_dir), run_dir, marker, "export")


def cmd_show_recommendations(args) -> int:
    store, pipeline = _store(args)
    export, which = _export_to_show(store, pipeline.name, args)
    print(which, file=sys.stderr)
    with export.open("recommendations.parquet") as f:
        pf = pq.ParquetFile(f)
        out = sys.stdout
        first = True
        for batch in pf.iter_batches(batch_size=65536, columns=COLUMNS):
            df = batch.to_pandas()
            if args.user is not None:
                df = df[df["user_id"] == args.user]
            if df.empty:
                continue
            if args.format == "csv":
                df.to_csv(out, index=False, header=first)
            elif args.format == "jsonl":
                df.assign(dt=df["dt"].astype(str)).to_json(out, orient="records", lines=True)
            else:
                out.write(
                    df.to_string(index=False, header=first, formatters={"score": "{:.4f}".format}) + "\n"
                )
            first = False
    if first and args.user is not None:
        raise InputDataError(
            f"user {args.user!r} has no recommendations in {which.removeprefix('showing ')} of {pipeline.name} "
            f"({export.metadata.get('stats', {}).get('users', '?')} users)",
            hint="check the id: users without any event in the lookback window get no recommendations",
        )
    return 0


# -- data ----------------------------------------------------------------------------------------------------


def _local_warehouse(args):
    env = load_environment(args.env)
    pipeline = load_pipeline(args.pipeline, args.env)
    return open_warehouse(env), pipeline


def cmd_data_generate(args) -> int:
    wh, pipeline = _local_warehouse(args)
    spec = SyntheticSpec(
        users=args.users,
        items=args.items,
        days=args.days,
        seed=args.seed,
        end_date=parse_date(args.end_date, "--end-date"),
        events_per_user=args.events_per_user,
    )
    events, items = generate(spec)
    with wh:
        counts = write_source(
            wh, pipeline.source.events_table, pipeline.source.items_table, events, items, append=False
        )
    print(json.dumps({"pipeline": pipeline.name, "events_table": pipeline.source.events_table, **counts}))
    return 0


def cmd_data_import(args) -> int:
    wh, pipeline = _local_warehouse(args)
    with wh:
        counts = import_movielens(wh, args.path, pipeline.source.events_table, pipeline.source.items_table)
    print(json.dumps({"pipeline": pipeline.name, "imported_from": args.path, **counts}))
    return 0


# -- demo ----------------------------------------------------------------------------------------------------


def cmd_demo(args) -> int:
    env = load_environment("local")
    pipeline = load_pipeline(args.pipeline, "local")
    dt = parse_date(args.date)
    with open_warehouse(env) as wh:
        if not wh.table_exists(pipeline.source.events_table):
            print(f"generating demo data into {env.resolved_duckdb_path()} ...", file=sys.stderr)
            events, items = generate(SyntheticSpec(end_date=dt))
            write_source(
                wh, pipeline.source.events_table, pipeline.source.items_table, events, items, append=False
            )
    # The same workflow Digdag runs in the cloud, through the local .dig runner (batch/digdag/local.py).

    workflow = PROJECT_ROOT / "digdag" / f"{pipeline.name}.dig"
    if not workflow.exists():
        raise ConfigError(
            f"{workflow}: no workflow for pipeline {pipeline.name!r}",
            hint="each pipeline has digdag/<pipeline>.dig (see docs/digdag.md)",
        )
    result = run_workflow(workflow, dt, {"env": "local"}, out=sys.stderr)
    if not result.success:
        print(
            f"demo: workflow {workflow.name} failed at {result.failed_task}: {result.error} "
            f"(attempt record: {result.record_path})",
            file=sys.stderr,
        )
        return 1
    store = ArtifactStore(env.resolved_artifact_root())
    print_demo_summary(store, pipeline.name, dt, pipeline.candidates.shard_count, env.resolved_duckdb_path())
    return 0


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "n/a"


def time_line(summary: dict) -> str:
    """'work 3.1 s, platform 9.8 s (start-up 6.2 s)': the step processes' time, summed (slowest shard)."""
    recs = [e.get("phases") or {} for e in summary["steps"].values()]
    work = sum(r.get("work_s") or 0 for r in recs)
    overhead = sum(r.get("overhead_s") or 0 for r in recs)
    startup = sum(r.get("startup_s") or 0 for r in recs)
    return (
        f"work {work:.1f} s, platform {overhead:.1f} s (start-up {startup:.1f} s) over "
        f"{sum(1 for r in recs if r)} steps; per phase: reco show summary, or the report's 'Where the time went'"
    )


def print_demo_summary(
    store: ArtifactStore, pipeline: str, dt: date, shard_count: int, warehouse: str
) -> None:
    s = build_summary(store, pipeline, dt, shard_count)
    data, metrics = s.get("data", {}), s.get("metrics", {})
    model_m = metrics.get("model", {})
    base_m = metrics.get("popularity_baseline", {})
    latest = s["published"]["latest"] or {}
    lines = [
        "",
        f"Demo pipeline '{pipeline}' for {dt}",
        f"  local state:      {reco_home()}",
        f"  warehouse:        {warehouse}",
        f"  artifacts:        {store.root_url}/{pipeline}/",
        f"  published:        {', '.join(store.display(f) for f in (latest.get('files') or {}).values())}",
        f"  events used:      {data.get('events_valid')}  dropped: {data.get('dropped')}",
        f"  users/items:      {data.get('users')} / {data.get('items')}  interactions: {data.get('interactions')}",
        f"  model:            {s.get('model', {}).get('version')}",
        f"  nDCG@10:          {_fmt(model_m.get('ndcg@10'))}  (popularity baseline {_fmt(base_m.get('ndcg@10'))})",
        f"  gates:            {gates_line(s)}  rows: {(s.get('export') or {}).get('stats', {}).get('rows')}",
        f"  report:           {s.get('report') or 'not written'}",
        f"  time:             {time_line(s)}",
        f"  try:              reco show recommendations --pipeline {pipeline} --date {dt} --user u0000001",
        f"                    reco show summary --pipeline {pipeline} --date {dt}",
    ]
    print("\n".join(lines))
