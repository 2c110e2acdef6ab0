"""`reco tune`'s implementation (the command's arguments are in batch/cli/tune.py, which loads this module only
when the command runs: Optuna and SQLAlchemy take about a second to import, which every other command would pay)."""

from __future__ import annotations

import json
import logging
import os
import sys
import time

from batch.alerts.slack import SlackNotifier
from batch.cli.common import apply_tuned
from batch.config import load_environment, load_pipeline, parse_date, parse_set_options
from batch.errors import ConfigError, RecoError
from batch.storage import ArtifactStore
from batch.tuning import cloud, promotion
from batch.tuning.objective import Objective, TuningData
from batch.tuning.report import slack_message, study_overview
from batch.tuning.storage import storage_url
from batch.tuning.study import TuneSetup, finish, prepare, read_report
from batch.tuning.workers import run_worker, spawn_local_workers

log = logging.getLogger("reco.tune")


def _need_date(args) -> None:
    if not args.date:
        raise ConfigError("--date is required (the session date whose data the study tunes on)")


def build_setup(args) -> TuneSetup:
    _need_date(args)
    explicit = parse_set_options(args.overrides)
    env = load_environment(args.env)
    store = ArtifactStore(env.resolved_artifact_root())
    cfg = load_pipeline(args.pipeline, args.env, explicit)
    production, recorded = apply_tuned(store, args.pipeline, args.env, explicit)
    session_date = parse_date(args.date)
    trials = args.trials if args.trials is not None else cfg.tuning.trials
    workers = args.workers if args.workers is not None else cfg.tuning.workers
    if trials < 1 or workers < 1:
        raise ConfigError("--trials and --workers must be >= 1")
    return TuneSetup(
        cfg=cfg,
        production=production,
        session_date=session_date,
        store=store,
        storage_url=storage_url(cfg, args.storage),
        study_name=args.study or f"{cfg.name}-{session_date.isoformat()}",
        trials=trials,
        workers=workers,
        overrides=explicit,
        production_provenance=json.loads(recorded[promotion.PROVENANCE_KEY])
        if promotion.PROVENANCE_KEY in recorded
        else None,
    )


def _worker_argv(args, setup: TuneSetup) -> list[str]:
    argv = ["tune", "--stage", "work", "--pipeline", setup.cfg.name, "--date", str(setup.session_date)]
    argv += ["--env", args.env, "--study", setup.study_name]
    if args.storage:
        argv += ["--storage", args.storage]
    argv += ["--trials", str(setup.trials), "--workers", str(setup.workers)]
    if args.timeout:
        argv += ["--timeout", str(args.timeout)]
    for key, value in setup.overrides.items():
        argv += ["--set", f"{key}={value}"]
    return argv


def _work(args, setup: TuneSetup, data: TuningData) -> int:
    index = args.worker_index
    if index is None:
        index = int(os.environ.get("JOB_COMPLETION_INDEX", "0"))
    study = setup.load_study(index)
    budget = int(study.user_attrs.get("budget", setup.trials))
    objective = Objective(setup.cfg, setup.production, setup.space, data, setup.workers)
    deadline = time.time() + args.timeout if args.timeout else None

    def progress(t) -> None:
        value = f"{t.value:.4f}" if t.value is not None else "-"
        print(f"  trial {t.number:>3} {t.state.name.lower():<8} {value}  {t.params}", file=sys.stderr)

    return run_worker(study, setup.storage_url, objective, budget, deadline, progress)


def cmd_tune(args) -> int:
    if args.rollback:
        return _rollback(args)
    if args.show:
        return _show(args)
    if args.notify:
        return _notify(args)
    setup = build_setup(args)
    env = load_environment(args.env)
    if args.stage == "all" and env.runner == "gke":  # an Indexed Job of K pods does all of it (cloud.py)
        argv = _worker_argv(args, setup)
        argv[argv.index("--stage") + 1] = "pod"
        if args.dry_run:
            argv.append("--dry-run")
        attempt = args.attempt or time.strftime("m%Y%m%d%H%M%S")
        job = cloud.build_worker_job(
            env, setup.cfg.name, str(setup.session_date), attempt, setup.workers, argv
        )
        cloud.run_workers(env, job)
        return 0
    data = TuningData.load(setup.store, setup.production, setup.session_date)
    if args.stage == "pod":
        prepare(setup, data)
        _work(args, setup, data)
        index = (
            args.worker_index
            if args.worker_index is not None
            else int(os.environ.get("JOB_COMPLETION_INDEX", "0"))
        )
        if index == 0:
            print(json.dumps(finish(setup, data, dry_run=args.dry_run), indent=2, default=str))
        return 0
    if args.stage in ("all", "prepare"):
        prepare(setup, data)
    if args.stage == "work":
        ran = _work(args, setup, data)
        print(json.dumps({"worker": args.worker_index, "trials_run": ran}))
        return 0
    if args.stage == "all":
        started = time.perf_counter()
        print(
            f"reco tune {setup.study_name}: {setup.trials} trials, {setup.workers} workers, "
            f"storage {setup.storage_url.split('@')[-1]}",
            file=sys.stderr,
        )
        if setup.workers == 1:  # no process to spawn: this one is the worker
            args.worker_index = 0
            _work(args, setup, data)
            codes = [0]
        else:
            procs = spawn_local_workers(_worker_argv(args, setup), setup.workers)
            codes = [p.wait() for p in procs]
        bad = [(i, c) for i, c in enumerate(codes) if c != 0]
        if bad:  # their trials are failed by heartbeat / process id, the rest of the study stands
            log.warning("workers exited with errors: %s", bad)
        print(f"  workers done in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    if args.stage in ("all", "finish"):
        report = finish(setup, data, dry_run=args.dry_run)
        print(json.dumps(report, indent=2, default=str))
    return 0


def _store(args) -> ArtifactStore:
    return ArtifactStore(load_environment(args.env).resolved_artifact_root())


def _rollback(args) -> int:
    store = _store(args)
    cfg = load_pipeline(args.pipeline, args.env)
    left, now = promotion.rollback(store, cfg.name)
    print(
        json.dumps(
            {
                "rolled_back": promotion.provenance(left),
                "now_in_service": promotion.provenance(now) if now else "the config's own parameters",
            },
            indent=2,
        )
    )
    return 0


def _show(args) -> int:
    store = _store(args)
    cfg = load_pipeline(args.pipeline, args.env)
    out = {"in_service": promotion.read_pointer(store, cfg.name).get("current")}
    if args.date:
        setup = build_setup(args)
        out["study"] = study_overview(setup.load_study())
        try:
            out["report"] = read_report(store, cfg.name, setup.session_date)
        except RecoError:
            out["report"] = None
    print(json.dumps(out, indent=2, default=str))
    return 0


def _notify(args) -> int:
    _need_date(args)
    env = load_environment(args.env)
    cfg = load_pipeline(args.pipeline, args.env)
    report = read_report(_store(args), cfg.name, parse_date(args.date))
    SlackNotifier.for_environment(env).send(slack_message(report, env.name))
    return 0
