"""The index step, its gate and ANN candidates through the unchanged framework (batch.execute.run_step).

The demo catalogue (300 items) is far below models.ann's exact_below, so the tests force the IVF kind with a few
cells; with every cell probed the index answers like exact scoring, with one cell of many it does not.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from batch import datasets
from batch.errors import CheckFailedError, CorruptArtifactError
from batch.execute import run_step
from batch.graph import GRAPH
from batch.storage import new_run_id
from batch.summary import build_summary
from tests.conftest import SESSION

IVF = {"candidates.method": "ann", "candidates.ann.kind": "ivf_flat", "candidates.ann.nlist": "4"}
POOR_IVF = {**IVF, "candidates.ann.nprobe": "1"}


@pytest.fixture
def alerts(monkeypatch):
    from batch import execute

    sent: list[dict] = []
    monkeypatch.setattr(execute, "deliver", lambda ctx, message: sent.append(message) or True)
    return sent


def upstream(make_ctx, overrides):
    run_id = new_run_id()
    for name in ("aggregate", "train"):
        run_step(name, make_ctx(overrides=overrides, run_id=run_id))
    return run_id


def candidates_frame(make_ctx, overrides, run_id) -> pd.DataFrame:
    ctx = make_ctx(overrides=overrides, run_id=run_id)
    parts = []
    for i in range(ctx.shard_count):
        run_step("candidates", make_ctx(overrides=overrides, shard_index=i, run_id=run_id))
        part = datasets.committed(ctx, datasets.CANDIDATES, (i, ctx.shard_count))
        assert part.metadata["method"] == ctx.pipeline.candidates.method.replace("auto", "exact")
        parts.append(part.read_parquet("part.parquet").to_pandas())
    return pd.concat(parts, ignore_index=True)


def test_index_is_enabled_only_for_ann_or_auto(make_ctx):
    spec = GRAPH.step("index")
    assert not spec.is_enabled(make_ctx().pipeline)  # the demo default: exact
    assert spec.is_enabled(make_ctx(overrides={"candidates.method": "ann"}).pipeline)
    assert spec.is_enabled(make_ctx(overrides={"candidates.method": "auto"}).pipeline)
    names = GRAPH.names()
    assert names.index("train") < names.index("index") < names.index("candidates")


def test_index_is_committed_and_passes_its_gate(small_data, make_ctx):
    run_id = upstream(make_ctx, IVF)
    ctx = make_ctx(overrides=IVF, run_id=run_id)
    result = run_step("index", ctx)
    assert result["method"] == "ann" and result["counts"]["items_indexed"] > 0
    built = datasets.index(ctx)
    assert built.model_version == datasets.model(ctx).version
    meta = built.src.metadata
    assert meta["index"]["kind"] == "ivf_flat" and meta["index"]["params"]["nlist"] == 4
    assert meta["index"]["build_seconds"] >= 0
    index = built.load()
    items = datasets.model(ctx).items()
    assert set(index.item_idx.tolist()) == set(items.loc[items["available"], "item_idx"].tolist())
    verdict = datasets.committed(ctx, "quality_index")
    assert verdict.metadata["passed"] is True
    figures = verdict.metadata["info"]["figures"]
    assert figures["recall_at_n"] >= 0.95 and figures["n"] == 50 and figures["seed"] == 42
    summary = build_summary(ctx.store, "demo", SESSION, ctx.shard_count)
    assert summary["candidates_method"]["method"] == "ann"
    assert summary["gates"]["index check"]["passed"] is True


def test_a_poor_index_fails_the_gate_and_candidates_refuse_it(small_data, make_ctx, alerts):
    run_id = upstream(make_ctx, POOR_IVF)
    ctx = make_ctx(overrides={**POOR_IVF, "checks.index.min_recall": "0.99"}, run_id=run_id)
    with pytest.raises(CheckFailedError, match="index check failed") as e:
        run_step("index", ctx)
    assert e.value.exit_code == 3
    assert any("index check" in a["text"] for a in alerts)
    verdict = datasets.committed(ctx, "quality_index")
    assert verdict.metadata["passed"] is False
    assert verdict.metadata["info"]["figures"]["recall_at_n"] < 0.99
    with pytest.raises(CheckFailedError, match="index check failed for the committed 'index'"):
        run_step("candidates", make_ctx(overrides=POOR_IVF, run_id=run_id))
    # the same date rerun with exact scoring never reads the refused index
    run_step("candidates", make_ctx(run_id=run_id))


def test_ann_candidates_cover_every_user_once_and_match_exact(small_data, make_ctx):
    run_id = upstream(make_ctx, IVF)
    run_step("index", make_ctx(overrides=IVF, run_id=run_id))
    ann = candidates_frame(make_ctx, IVF, run_id)
    exact = candidates_frame(make_ctx, {}, run_id)
    users = datasets.model(make_ctx()).users()["user_id"]
    assert ann.groupby("user_id")["rank"].min().eq(1).all()
    assert sorted(ann["user_id"].unique()) == sorted(users)  # every user, from exactly one shard
    assert not ann.duplicated(["user_id", "rank"]).any() and not ann.duplicated(["user_id", "item_id"]).any()
    assert list(ann.columns) == list(exact.columns) and ann.dtypes.equals(exact.dtypes)
    # never a seen or unavailable item
    inter = datasets.interactions(make_ctx()).frame(columns=["user_idx", "item_idx"])
    items = datasets.model(make_ctx()).items()
    seen = set(
        zip(users.to_numpy()[inter["user_idx"]], items["item_id"].to_numpy()[inter["item_idx"]], strict=True)
    )
    assert not any(pair in seen for pair in zip(ann["user_id"], ann["item_id"], strict=True))
    assert not ann["item_id"].isin(items.loc[~items["available"], "item_id"]).any()
    # same lists as exact scoring on most of each list (every cell probed: the same items, scores to float error)
    a = ann.groupby("user_id")["item_id"].apply(set)
    x = exact.groupby("user_id")["item_id"].apply(set)
    overlap = np.mean([len(a[u] & x[u]) / max(len(x[u]), 1) for u in x.index])
    assert overlap >= 0.95


def test_auto_records_its_choice_and_reason(small_data, make_ctx):
    auto = {"candidates.method": "auto"}
    run_id = upstream(make_ctx, auto)
    ctx = make_ctx(overrides=auto, run_id=run_id)
    result = run_step("index", ctx)
    # 300 items is far below the calibrated exact_below: auto keeps exact, says why, builds nothing
    assert result["method"] == "exact" and "items is below" in result["reason"]
    built = datasets.index(ctx)
    assert built.src.metadata["requested"] == "auto" and built.method == "exact"
    summary = build_summary(ctx.store, "demo", SESSION, ctx.shard_count)
    assert summary["candidates_method"]["method"] == "exact"
    assert summary["candidates_method"]["reason"].startswith("auto: ")
    assert summary["gates"]["index check"]["passed"] is True  # a skipped recall check
    frame = candidates_frame(make_ctx, auto, run_id)
    assert len(frame) > 0


def test_nan_factors_name_the_model_artifact_and_train(small_data, make_ctx, monkeypatch):
    run_id = upstream(make_ctx, IVF)
    ctx = make_ctx(overrides=IVF, run_id=run_id)
    load = datasets.Model.load

    def diverged(self):  # a model whose training diverged: the artifact is intact, its numbers are not
        model = load(self)
        model.item_factors[3, 0] = np.nan
        return model

    monkeypatch.setattr(datasets.Model, "load", diverged)
    with pytest.raises(CorruptArtifactError, match="item factors contain NaN or inf") as e:
        run_step("index", ctx)
    assert e.value.path == datasets.model(ctx).src.path("model.npz") and e.value.step == "train"
    assert datasets.committed_or_none(ctx, datasets.INDEX) is None  # nothing committed


def test_the_pipeline_publishes_with_ann_candidates(small_data, make_ctx, run_pipeline):
    results = run_pipeline(overrides=IVF)
    assert results["index"]["method"] == "ann"
    assert results["publish"]["published"]
    latest = make_ctx().store.latest("demo")
    assert latest["dt"] == SESSION.isoformat()


def test_submitting_the_index_for_an_exact_pipeline_starts_no_job(reco_home, capsys, monkeypatch):
    from batch.cli import main, submit

    def no_runner(env):
        raise AssertionError("a runner was asked to run a step the pipeline does not use")

    monkeypatch.setattr(submit, "get_runner", no_runner)
    assert (
        main(["submit", "index", "--pipeline", "demo", "--date", SESSION.isoformat(), "--env", "local"]) == 0
    )
    assert "skipped: not enabled for pipeline demo" in capsys.readouterr().err


def test_the_workflow_runs_the_index_before_the_candidates_of_an_ann_pipeline(tmp_path, monkeypatch):
    import shutil

    from batch.cli import build_parser
    from batch.config import PROJECT_ROOT, config_dir
    from batch.digdag.check import check_paths

    conf = tmp_path / "config"
    shutil.copytree(config_dir(), conf)
    demo = conf / "pipelines" / "demo.yaml"
    demo.write_text(demo.read_text().replace("  shard_count: 2\n", "  shard_count: 2\n  method: ann\n", 1))
    monkeypatch.setenv("RECO_CONFIG_DIR", str(conf))
    project = tmp_path / "digdag"
    shutil.copytree(PROJECT_ROOT / "digdag", project)
    assert not check_paths([project / "demo.dig"], parser=build_parser()).problems
    # the index task moved after the candidates: named
    daily = project / "tasks" / "daily.dig"
    text = daily.read_text()
    block = text[text.index("+index:") : text.index("# user candidates")]
    daily.write_text(text.replace(block, "").replace("+export:", block + "+export:"))
    problems = [str(p) for p in check_paths([project / "demo.dig"], parser=build_parser()).problems]
    assert any("step 'candidates' runs before or alongside step 'index'" in p for p in problems), problems
