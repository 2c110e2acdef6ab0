"""Moving what is in service, as one commit point: publish, rollback, pin and unpin.

What consumers read has three parts: the files of a publish (``reco show``, the model gate's reference), the
promoted model (what the model gate compares with and incremental runs chain from), and the warehouse's serving
view ``<export table>_serving`` (a view of the export table's ``dt`` partition in service). One record,
``published/SERVING.json``, names all three together and is the only thing readers follow; it is written last,
in one atomic write. Everything before it is idempotent and invisible to readers of the serving record:

1. take the pipeline's publish lock (batch.locks.publish_lock_url; a rollback waits for or refuses against a
   run that is publishing, and the reverse);
2. warehouse: replace the ``dt`` partition with the run's files (DuckDB transaction / BigQuery load job into
   ``table$YYYYMMDD``, WRITE_TRUNCATE), then re-point the serving view (``CREATE OR REPLACE VIEW``);
3. per-date records ``dt=<D>.json`` and ``model-dt=<D>.json`` (what a later rollback restores);
4. SERVING.json: the commit point;
5. the ledger entry (batch.ledger; SERVING.json carries it too, so a crash here loses nothing).

A failure (an exception, ENOSPC, a lost lock) anywhere before 4 puts the warehouse back as the serving record
says: the view is re-pointed to the date in service and, when the failed publish replaced the partition of that
very date, the partition is reloaded from the files in service. So after any fault the serving record, the
warehouse's serving view and the export the record names are the same run. A process killed (SIGKILL) between 2
and 4 of a publish of the date that is already in service leaves that partition with the new run's rows until
the next publish or rollback, which both rewrite the partition they point at; ``reco rollback --to <date in
service>`` repairs it at once (docs/operations.md).
"""

from __future__ import annotations

import logging
import posixpath
from dataclasses import dataclass
from datetime import date, timedelta

from batch import ledger
from batch.errors import InputDataError, MissingArtifactError
from batch.locks import RunLock, publish_lock_url
from batch.storage import PROMOTED_MODEL, PUBLISH, ArtifactStore, Committed
from batch.warehouse import open_warehouse

log = logging.getLogger(__name__)

VIEW_SUFFIX = "_serving"
PUBLISH_LOCK_WAIT_S = 120.0  # a publish waits this long for a rollback of the same pipeline


def failpoint(name: str) -> None:
    """A named boundary between two moves; tests replace this to inject a fault there."""


def view_of(table: str) -> str:
    return table + VIEW_SUFFIX


def publish_lock(store: ArtifactStore, pipeline: str, what: str) -> RunLock:
    return RunLock(publish_lock_url(store.root_url, pipeline), what=what)


@dataclass
class Outcome:
    moved: bool
    held_by_pin: bool
    tables: dict
    entry: dict


# -- the warehouse half ----------------------------------------------------------------------------------------


def _targets(record: dict) -> dict[str, str]:
    """file name -> warehouse table of a publish record."""
    return dict(record.get("targets") or {})


def _load_and_point(store: ArtifactStore, wh, record: dict, *, load: bool, point: bool) -> dict:
    dt = date.fromisoformat(record["dt"])
    loaded = {}
    for name, table in _targets(record).items():
        if load:
            url = store.display(record["files"][name])
            loaded[table] = wh.load_parquet(table, url, mode="replace_partition", partition=dt)
            failpoint("warehouse partition loaded")
        if point:
            wh.point_view(view_of(table), table, dt)
            failpoint("serving view pointed")
    return loaded


def warehouse_state(record: dict) -> dict:
    return {
        "dt": record["dt"],
        "run_id": record.get("run_id"),
        "views": {table: view_of(table) for table in _targets(record).values()},
    }


def _restore_warehouse(store: ArtifactStore, env, previous: dict | None, touched_dt: str) -> None:
    """After a failed move: make the warehouse serve what the serving record says again. Never raises."""
    try:
        with open_warehouse(env) as wh:
            publish = (previous or {}).get("publish")
            if publish is None or not _targets(publish):
                return
            _load_and_point(store, wh, publish, load=publish["dt"] == touched_dt, point=True)
    except Exception as e:  # the original error is what the caller reports
        log.error(
            "could not put the warehouse back to the publish in service; run reco rollback --to its date",
            extra={"error": f"{type(e).__name__}: {e}"},
        )


def _commit(
    store: ArtifactStore,
    env,
    pipeline: str,
    previous: dict | None,
    publish: dict,
    model: dict | None,
    *,
    warehouse: bool,
    load: bool,
    entry: dict,
    pinned: dict | None,
) -> dict:
    """Steps 2-4 of the module docstring for a record that becomes the one in service."""
    loaded: dict = {}
    try:
        if warehouse and _targets(publish):
            with open_warehouse(env) as wh:
                loaded = _load_and_point(store, wh, publish, load=load, point=True)
        failpoint("warehouse moved")
        state = {
            "pipeline": pipeline,
            "publish": publish | ({"tables": loaded} if loaded else {}),
            "model": model,
            "warehouse": warehouse_state(publish) if warehouse else None,
            "pinned": pinned,
            "event": entry,
        }
        store.commit_serving(pipeline, state)
    except BaseException:
        if warehouse:
            _restore_warehouse(store, env, previous, publish["dt"])
        raise
    return loaded


def _after_commit(store: ArtifactStore, env, metrics_table: str, entry: dict) -> None:
    failpoint("committed")
    try:
        ledger.record(store, env, metrics_table, entry)
    except Exception as e:  # committed already; SERVING.json carries the entry
        log.warning("ledger file not written (the serving record holds the entry)", extra={"error": str(e)})


# -- publish (the publish step) --------------------------------------------------------------------------------


def publish(
    store: ArtifactStore,
    env,
    pipeline_cfg,
    record: dict,
    model_record: dict,
    *,
    figures: dict | None = None,
) -> Outcome:
    """A checked export becomes the one in service (forward only in time; held while pinned)."""
    name = pipeline_cfg.name
    warehouse = "warehouse" in pipeline_cfg.export.destinations
    metrics_table = pipeline_cfg.checks.anomaly.table
    with publish_lock(store, name, f"publish of {name} {record['dt']}").acquire(
        timeout_s=PUBLISH_LOCK_WAIT_S
    ):
        previous = store.serving(name)
        current = (previous or {}).get("publish")
        pinned = (previous or {}).get("pinned")
        forward = current is None or record["dt"] >= current["dt"]
        moves = forward and not pinned
        base = {
            "model_version": record.get("model_version"),
            "run_id": record.get("run_id"),
            "run_ids": {"export": record.get("run_id"), "model": model_record.get("run_dir")},
            "figures": figures or {},
            "serving": current and {"dt": current["dt"], "run_id": current.get("run_id")},
        }
        if moves:
            entry = ledger.new_entry("publish", name, record["dt"], moved=True, **base)
            store.write_record(name, PUBLISH, record)
            failpoint("publish record written")
            store.write_record(name, PROMOTED_MODEL, model_record)
            failpoint("model record written")
            loaded = _commit(
                store,
                env,
                name,
                previous,
                record,
                model_record,
                warehouse=warehouse,
                load=True,
                entry=entry,
                pinned=None,
            )
            _after_commit(store, env, metrics_table, entry)
            return Outcome(True, False, loaded, entry)
        # not in service: a backfill of an older date (its partition is loaded, the view stays), or held by a pin
        # (nothing in the warehouse changes; a later rollback to this date loads it from the files)
        reason = (
            f"held by pin of {current['dt']}" if pinned else f"backfill: {current['dt']} stays in service"
        )
        entry = ledger.new_entry("publish", name, record["dt"], moved=False, reason=reason, **base)
        loaded = {}
        if warehouse and not pinned and _targets(record):
            with open_warehouse(env) as wh:
                loaded = _load_and_point(store, wh, record, load=True, point=False)
        store.write_record(name, PUBLISH, record | ({"tables": loaded} if loaded else {}))
        store.write_record(name, PROMOTED_MODEL, model_record)
        _after_commit(store, env, metrics_table, entry)
        return Outcome(False, bool(pinned), loaded, entry)


# -- rollback, pin, unpin (reco rollback) ----------------------------------------------------------------------


def check_files(store: ArtifactStore, record: dict, step: str) -> list[str]:
    """What is missing or corrupt among a record's files (checksums when the record has them)."""
    run_dir = store.resolve(record["run_dir"])
    checksums = record.get("checksums")
    problems = []
    if isinstance(checksums, dict) and checksums:
        c = Committed(store.fs, posixpath.dirname(run_dir), run_dir, {"run_id": "", "files": checksums}, step)
        for file_name in checksums:
            try:
                c.verify_file(file_name)
            except Exception as e:  # MissingArtifactError / CorruptArtifactError name the path
                problems.append(str(e).split(" (hint:")[0])
        return problems
    for path in (record.get("files") or {}).values():
        if not store.fs.exists(store.resolve(path)):
            problems.append(f"missing: {store.display(path)}")
    if not (record.get("files") or {}) and not store.fs.exists(run_dir):
        problems.append(f"missing: {store.display(run_dir)}")
    return problems


@dataclass
class Plan:
    pipeline: str
    target: dict
    model: dict
    current: dict | None
    pin: bool


def plan_rollback(store: ArtifactStore, pipeline_cfg, to: date, *, pin: bool = False) -> Plan:
    """Validate a rollback target; errors name what is wrong. Moves nothing."""
    name = pipeline_cfg.name
    state = store.serving(name)
    if state is None or state.get("publish") is None:
        raise InputDataError(
            f"{name}: nothing is published under {store.root_url}; there is nothing to roll back",
            hint=f"reco show history --pipeline {name}",
        )
    records = store.publish_records(name)
    target = store.pointer_record(name, PUBLISH, to.isoformat())
    if target is None:
        dates = ", ".join(r["dt"] for r in records[-10:]) or "none"
        raise InputDataError(
            f"{name}: no publish on {to} to roll back to (published dates, latest 10: {dates})",
            hint=f"reco show history --pipeline {name}",
        )
    newest = date.fromisoformat(max(r["dt"] for r in records))
    horizon = newest - timedelta(days=pipeline_cfg.export.retention_days)
    if to < horizon:
        raise InputDataError(
            f"{name}: {to} is beyond the retention of {pipeline_cfg.export.retention_days} days (publishes "
            f"before {horizon} may have lost their files to garbage collection)",
            hint="pick a date within export.retention_days of the latest publish, or raise "
            "export.retention_days before it is needed",
        )
    model = store.pointer_record(name, PROMOTED_MODEL, to.isoformat())
    problems = check_files(store, target, "export")
    if model is None:
        problems.append(
            f"no promotion record of the model of {to}: {store.display(store.record_path(name, PROMOTED_MODEL, to.isoformat()))}"
        )
    else:
        problems += check_files(store, model, "train")
    if problems:
        raise MissingArtifactError(
            f"{name}: cannot roll back to {to}, its files are not whole: " + "; ".join(problems),
            path=store.display(target["run_dir"]),
            step="export",
            rerun=f"reco run --pipeline {name} --date {to} (a new run of that date), or pick another date",
        )
    return Plan(name, target, model, state.get("publish"), pin)


def rollback(
    store: ArtifactStore, env, pipeline_cfg, to: date, *, reason: str | None, pin: bool, lock_timeout_s: float
) -> tuple[Plan, dict]:
    """Make an earlier publish the one in service again: files, model and warehouse view in one commit."""
    name = pipeline_cfg.name
    with publish_lock(store, name, f"rollback of {name}").acquire(timeout_s=lock_timeout_s):
        plan = plan_rollback(store, pipeline_cfg, to, pin=pin)
        previous = store.serving(name)
        current = plan.current or {}
        entry = ledger.new_entry(
            "pin"
            if pin
            and current.get("dt") == plan.target["dt"]
            and current.get("run_id") == plan.target.get("run_id")
            else "rollback",
            name,
            plan.target["dt"],
            model_version=plan.target.get("model_version"),
            run_id=plan.target.get("run_id"),
            run_ids={"restored": plan.target.get("run_id"), "replaced": current.get("run_id")},
            figures=plan.target.get("stats") or {},
            reason=reason,
            pinned=pin,
            replaced={
                "dt": current.get("dt"),
                "run_id": current.get("run_id"),
                "model_version": current.get("model_version"),
            },
        )
        pinned = (
            {"dt": plan.target["dt"], "by": entry["actor"], "at": entry["at"], "reason": reason}
            if pin
            else None
        )
        _commit(
            store,
            env,
            name,
            previous,
            plan.target,
            plan.model,
            warehouse="warehouse" in pipeline_cfg.export.destinations,
            load=True,  # rewrite the partition from the target's files: it serves exactly that run
            entry=entry,
            pinned=pinned,
        )
        _after_commit(store, env, pipeline_cfg.checks.anomaly.table, entry)
        return plan, entry


def unpin(
    store: ArtifactStore, env, pipeline_cfg, *, reason: str | None, lock_timeout_s: float
) -> dict | None:
    """Let later publishes replace the one in service again. None when nothing was pinned."""
    name = pipeline_cfg.name
    with publish_lock(store, name, f"unpin of {name}").acquire(timeout_s=lock_timeout_s):
        state = store.serving(name)
        if not state or not state.get("pinned"):
            return None
        publish_ = state.get("publish") or {}
        entry = ledger.new_entry(
            "unpin",
            name,
            publish_.get("dt"),
            model_version=publish_.get("model_version"),
            run_id=publish_.get("run_id"),
            reason=reason,
            pinned_by=state["pinned"],
        )
        store.commit_serving(name, {**state, "pinned": None, "event": entry})
        _after_commit(store, env, pipeline_cfg.checks.anomaly.table, entry)
        return entry
