"""docs/extending.md holds true: a step, a gate and a candidate source added by registration alone run end to end.

Each test registers what the page says to write (a function with @step / a GateSpec / a source step) for the
duration of the test and runs the unchanged framework over it: ordering, gates, metrics, summary, export, publish,
the Digdag check and the config check all pick it up.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from batch import datasets
from batch import metrics_store as ms
from batch.cli import build_parser
from batch.config import load_environment
from batch.digdag.check import check_paths
from batch.errors import CheckFailedError, ConfigError
from batch.execute import run_step
from batch.graph import GRAPH, Export, GateOutcome, GateSpec, StepSpec
from batch.summary import build_summary

SESSION = __import__("datetime").date(2026, 11, 21)


@pytest.fixture
def alerts(monkeypatch):
    from batch import execute

    sent: list[dict] = []
    monkeypatch.setattr(execute, "deliver", lambda ctx, message: sent.append(message) or True)
    return sent


# -- an extra step with a blocking gate -----------------------------------------------------------------------


def item_norms(ctx) -> dict:
    """The extra step: the norm of every item's factors (reads the model, writes dataset item_norms)."""
    model = datasets.model(ctx)
    factors = model.load().item_factors
    norms = np.linalg.norm(factors, axis=1).astype(np.float32)
    with ctx.store.writer(ctx.name, "item_norms", ctx.session_date, run_id=ctx.run_id) as w:
        w.write_parquet("norms.parquet", pa.table({"item_idx": np.arange(len(norms)), "norm": norms}))
        w.metadata.update({"run": ctx.run_record(), "counts": {"items": len(norms)}})
    return {"counts": {"items": len(norms)}, "stats": {"max_norm": float(norms.max())}}


def norms_gate(max_norm: float):
    def judge(ctx, result) -> GateOutcome:
        from batch.checks.data import CheckResult

        value = result["stats"]["max_norm"]
        ok = value <= max_norm
        return GateOutcome(
            [CheckResult("max_norm", "pass" if ok else "fail", value, f"<= {max_norm}", "largest item norm")]
        )

    return GateSpec(name="norms gate", guards="item_norms", func=judge, dataset="quality_item_norms")


EXTRA_STEP = StepSpec(name="item_norms", func=item_norms, reads=(datasets.MODEL,), writes="item_norms")


def norms_reader(ctx) -> dict:
    datasets.committed(ctx, "item_norms")
    return {}


READER = StepSpec(name="norms_reader", func=norms_reader, reads=("item_norms",), writes="norms_read")


def test_an_extra_step_runs_in_order_with_its_metrics_gate_and_summary(small_data, make_ctx, run_pipeline):
    with GRAPH.extended(EXTRA_STEP, norms_gate(max_norm=1e9)):
        names = GRAPH.names()
        assert names.index("train") < names.index("item_norms")  # ordered by what it reads
        results = run_pipeline()
        assert results["item_norms"]["counts"]["items"] > 0 and results["publish"]["published"]
        store = make_ctx().store
        summary = build_summary(store, "demo", SESSION, 2)
        assert summary["steps"]["item_norms"]["counts"]["items"] == results["item_norms"]["counts"]["items"]
        assert summary["gates"]["norms gate"]["passed"] is True
        hist = ms.history(
            load_environment("local"), "reco_metrics.run_metrics", "demo", since=SESSION, until=SESSION
        )
        assert {"items", "max_norm", "check_value"} <= set(hist[hist["step"] == "item_norms"]["metric"])
    assert "item_norms" not in GRAPH.names()  # the registration ended with the block


def test_a_failed_blocking_gate_stops_the_step_and_refuses_its_output(small_data, make_ctx, alerts):
    with GRAPH.extended(EXTRA_STEP, READER, norms_gate(max_norm=0.0)):
        for name in ("aggregate", "train"):
            run_step(name, make_ctx())
        with pytest.raises(CheckFailedError, match="norms gate failed"):
            run_step("item_norms", make_ctx())
        assert any("norms gate" in a["text"] for a in alerts)
        with pytest.raises(CheckFailedError, match="norms gate failed for the committed 'item_norms'"):
            run_step("norms_reader", make_ctx())


def test_the_digdag_check_names_a_registered_step_the_workflow_lacks():
    with GRAPH.extended(EXTRA_STEP):
        problems = [str(p) for p in check_paths(["digdag/demo.dig"], parser=build_parser()).problems]
    assert any("no task runs step 'item_norms'" in p for p in problems), problems


# -- an extra candidate source ----------------------------------------------------------------------------------

TRENDING_SCHEMA = pa.schema([("item_id", pa.string()), ("rank", pa.int32()), ("score", pa.float32())])


def trending(ctx) -> dict:
    """A sharded candidate source: the most interacted items of this shard."""
    model = datasets.model(ctx)
    items = model.items()
    mine = items[ctx.mine(items["item_id"].to_numpy()) & items["available"]].nlargest(10, "weight")
    table = pa.table(
        {
            "item_id": pa.array(mine["item_id"].to_numpy(), pa.string()),
            "rank": pa.array(np.arange(1, len(mine) + 1), pa.int32()),
            "score": pa.array(mine["weight"].to_numpy(), pa.float32()),
        },
        schema=TRENDING_SCHEMA,
    )
    with ctx.store.writer(ctx.name, "trending", ctx.session_date, shard=ctx.shard, run_id=ctx.run_id) as w:
        w.write_parquet("part.parquet", table)
        w.metadata.update(
            {"run": ctx.run_record(), "model_version": model.version, "counts": {"rows": len(mine)}}
        )
    return {"counts": {"rows": len(mine)}}


TRENDING = StepSpec(
    name="trending",
    func=trending,
    reads=(datasets.MODEL,),
    writes="trending",
    sharded=True,
    source="trending",
    exports=(Export("trending.parquet", ("item_id", "rank", "score"), "_trending"),),
)


def test_a_candidate_source_is_exported_and_published_when_the_pipeline_lists_it(
    small_data, make_ctx, run_pipeline
):
    with GRAPH.extended(TRENDING):
        sources = {"candidates.sources": "[personal, related, trending]"}
        results = run_pipeline(overrides=sources)
        assert results["export"]["tables"]["trending.parquet"] == "recommendations_demo_trending"
        latest = make_ctx().store.latest("demo")
        assert "trending.parquet" in latest["files"] and "recommendations_demo_trending" in latest["tables"]
        assert latest["tables"]["recommendations_demo_trending"] == 2 * 10  # two shards, ten items each
    # without the registration the same config names a source that does not exist
    with pytest.raises(ConfigError, match="candidates.sources.*'trending'"):
        GRAPH.check_pipeline(make_ctx(overrides=sources).pipeline)


def test_a_gate_on_a_sharded_step_is_refused():
    with GRAPH.extended(TRENDING, GateSpec("bad", "trending", lambda c, r: GateOutcome([]), "quality_bad")):
        with pytest.raises(ValueError, match="sharded step 'trending'"):
            GRAPH.gates_on("trending")
