"""End to end through the real steps: state that moves with RECO_HOME, and `reco show` serving the published run."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta

from batch.cli import main
from batch.storage import ArtifactStore
from tests.conftest import SESSION
from tests.rollback import helpers as h

DAY1 = SESSION - timedelta(days=1)
SMALL = ["--set", "model.params.iterations=2", "--set", "model.params.factors=8"]


def _cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_move_reco_home_then_run_show_and_roll_back(small_data, reco_home, tmp_path, monkeypatch, capsys):
    assert _cli(capsys, "run", "--pipeline", "demo", "--date", str(DAY1), *SMALL)[0] == 0
    raw = (reco_home / "artifacts" / "demo" / "published" / "SERVING.json").read_text()
    assert str(reco_home) not in raw  # records are relative to the artifact root
    moved = tmp_path / "elsewhere"
    shutil.move(str(reco_home), str(moved))
    monkeypatch.setenv("RECO_HOME", str(moved))

    code, out, err = _cli(capsys, "run", "--pipeline", "demo", "--date", str(SESSION), *SMALL)
    assert code == 0, err
    assert json.loads(out)["published"]["latest"]["dt"] == str(SESSION)
    code, out, err = _cli(capsys, "show", "recommendations", "--pipeline", "demo", "--format", "csv")
    assert code == 0 and f"showing the publish in service: {SESSION}" in err
    assert {line.split(",")[-1] for line in out.splitlines()[1:]} == {str(SESSION)}

    code, out, err = _cli(capsys, "rollback", "--pipeline", "demo", "--to", str(DAY1), "--reason", "test")
    assert code == 0, err
    _, _, store = h.setup()
    assert store.root.startswith(str(moved))
    assert store.latest("demo")["dt"] == str(DAY1) and store.promoted_model("demo")["dt"] == str(DAY1)
    assert h.view_items() and all(
        r == str(DAY1) for r in _view_dates()
    )  # the warehouse serving view follows the rollback
    code, out, err = _cli(capsys, "show", "recommendations", "--pipeline", "demo", "--format", "csv")
    assert code == 0 and f"showing the publish in service: {DAY1}" in err
    code, out, err = _cli(capsys, "show", "recommendations", "--pipeline", "demo", "--date", str(SESSION))
    assert code == 0 and f"not in service; in service: {DAY1}" in err


def _view_dates():
    from batch.config import load_environment
    from batch.warehouse import open_warehouse

    with open_warehouse(load_environment("local")) as wh:
        return {str(d) for d in wh.query(f"SELECT DISTINCT dt FROM {h.VIEW}").column("dt").to_pylist()}


def test_show_serves_the_published_run_unless_asked(small_data, make_ctx, run_pipeline, capsys):
    run_pipeline()
    store = make_ctx().store
    published = store.latest("demo")
    # a rerun of the date whose export is staged but never published (the publish step did not run)
    from batch.execute import run_step
    from batch.graph import GRAPH

    run_id = "rerun-" + published["run_id"]
    for step in GRAPH.steps():
        if step.name == "publish":
            continue
        shards = range(make_ctx().shard_count) if step.sharded else [0]
        for i in shards:
            run_step(step, make_ctx(shard_index=i, run_id=run_id))
    assert store.committed("demo", "export", SESSION, step="export").run_id == run_id
    code, _, err = _cli(capsys, "show", "recommendations", "--pipeline", "demo", "--date", str(SESSION))
    assert code == 0 and f"run {published['run_id']}" in err and "in service" in err
    code, _, err = _cli(
        capsys, "show", "recommendations", "--pipeline", "demo", "--date", str(SESSION), "--unpublished"
    )
    assert code == 0 and f"UNPUBLISHED export of {SESSION}: run {run_id}" in err
    code, _, err = _cli(
        capsys, "show", "recommendations", "--pipeline", "demo", "--date", str(SESSION), "--run", "nope"
    )
    assert code == 65 and "no kept export run 'nope'" in err


def test_old_absolute_records_still_read(tmp_path):
    old_root = tmp_path / "old"
    new_root = tmp_path / "new"
    (new_root / "demo" / "export" / "dt=2026-11-21" / "run=r1").mkdir(parents=True)
    store = ArtifactStore(str(new_root))
    old_path = f"{old_root}/demo/export/dt=2026-11-21/run=r1"
    assert store.resolve(old_path) == f"{new_root}/demo/export/dt=2026-11-21/run=r1"
    assert store.resolve("demo/export/dt=2026-11-21/run=r1") == f"{new_root}/demo/export/dt=2026-11-21/run=r1"


def test_a_store_from_before_the_serving_record_is_read(tmp_path):
    published = tmp_path / "demo" / "published"
    published.mkdir(parents=True)
    (published / "LATEST.json").write_text(
        json.dumps({"dt": "2026-11-20", "model_version": "a", "run_dir": "x"})
    )
    (published / "MODEL.json").write_text(
        json.dumps({"dt": "2026-11-20", "model_version": "a", "run_dir": "y"})
    )
    store = ArtifactStore(str(tmp_path))
    assert store.latest("demo")["model_version"] == "a" and store.promoted_model("demo")["run_dir"] == "y"
