"""Small publishes made without training: an export and a model partition per date, published through the same
batch.serving.publish the publish step calls, so rollback tests take milliseconds instead of a pipeline run."""

from __future__ import annotations

import posixpath
from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq

from batch import serving
from batch.config import load_environment, load_pipeline
from batch.storage import ArtifactStore, new_run_id, now_utc
from batch.warehouse import open_warehouse

TABLE = "recommendations_demo"
VIEW = TABLE + "_serving"


def setup():
    env = load_environment("local")
    cfg = load_pipeline("demo", "local")
    store = ArtifactStore(env.resolved_artifact_root(), retention_days=cfg.export.retention_days)
    return env, cfg, store


def make_export(store: ArtifactStore, dt: date, users: int, tag: str):
    """Export + model partitions of a date; every row's item names the run (``tag``) so rows tell runs apart."""
    run_id = new_run_id()
    table = pa.table(
        {
            "user_id": [f"u{i}" for i in range(users)],
            "item_id": [f"{tag}-i{i}" for i in range(users)],
            "rank": [1] * users,
            "score": [1.0] * users,
            "source": ["personal"] * users,
            "model_version": [f"m-{tag}"] * users,
            "dt": pa.array([dt] * users, type=pa.date32()),
        }
    )
    with store.writer("demo", "model", dt, run_id=run_id) as w:
        w.write_bytes("model.npz", f"model {tag}".encode())
        w.metadata["model_version"] = f"m-{tag}"
    model = store.committed("demo", "model", dt, step="train")
    with store.writer("demo", "export", dt, run_id=run_id) as w:
        w.write_parquet("recommendations.parquet", table)
        w.metadata.update({"model_version": f"m-{tag}", "tables": {"recommendations.parquet": TABLE}})
    export = store.committed("demo", "export", dt, step="export")
    return run_id, export, model


def records(store: ArtifactStore, dt: date, run_id: str, export, model, tag: str):
    run_dir = store.relative(export.run_dir)
    record = {
        "dt": dt.isoformat(),
        "model_version": f"m-{tag}",
        "run_dir": run_dir,
        "files": {"recommendations.parquet": posixpath.join(run_dir, "recommendations.parquet")},
        "checksums": dict(export.marker["files"]),
        "targets": {"recommendations.parquet": TABLE},
        "tables": {},
        "stats": {"rows": export.metadata.get("rows", 0), "users": 0},
        "published_at": now_utc(),
        "run_id": run_id,
        "export_run_id": export.run_id,
    }
    model_record = {
        "dt": dt.isoformat(),
        "model_version": f"m-{tag}",
        "run_dir": store.relative(model.run_dir),
        "checksums": dict(model.marker["files"]),
        "run_id": run_id,
    }
    return record, model_record


def publish(dt: date, tag: str | None = None, users: int = 5):
    env, cfg, store = setup()
    tag = tag or dt.isoformat()
    run_id, export, model = make_export(store, dt, users, tag)
    record, model_record = records(store, dt, run_id, export, model, tag)
    return serving.publish(store, env, cfg, record, model_record, figures={"rows": users})


def view_items() -> set[str]:
    """What consumers read: the items of the serving view (each names the run that wrote it)."""
    env, _, _ = setup()
    with open_warehouse(env) as wh:
        return set(wh.query(f"SELECT item_id FROM {VIEW}").column("item_id").to_pylist())


def view_tags() -> set[str]:
    return {i.split("-i")[0] for i in view_items()}


def partition_tags(dt: date) -> set[str]:
    env, _, _ = setup()
    with open_warehouse(env) as wh:
        t = wh.query(f"SELECT item_id FROM {TABLE} WHERE dt = @dt", {"dt": dt})
    return {i.split("-i")[0] for i in t.column("item_id").to_pylist()}


def served_tag(store: ArtifactStore) -> str:
    """The run the serving record names, as the tag of its rows (read through the record's own files)."""
    state = store.serving("demo")
    path = store.resolve(state["publish"]["files"]["recommendations.parquet"])
    items = pq.read_table(path, columns=["item_id"]).column("item_id").to_pylist()
    return items[0].split("-i")[0]


def assert_consistent(store: ArtifactStore) -> str:
    """The serving record, its model, its files and the warehouse's serving view all name one run."""
    state = store.serving("demo")
    tag = served_tag(store)
    assert state["model"]["dt"] == state["publish"]["dt"]
    assert state["model"]["model_version"] == state["publish"]["model_version"] == f"m-{tag}"
    assert view_tags() == {tag}, (view_tags(), tag)
    assert store.latest("demo") == state["publish"] and store.promoted_model("demo") == state["model"]
    return tag
