"""Where a step's wall time went: every step process writes its phases, the summary and the report show them."""

from __future__ import annotations

import pytest

from batch.errors import CheckFailedError
from batch.graph import GRAPH
from batch.storage import ArtifactStore
from batch.summary import build_summary
from batch.timings import Phases, process_age_s, record, table_rows
from tests.conftest import SESSION


def test_phases_accumulate_and_the_record_splits_work_from_overhead():
    phases = Phases()
    with phases.phase("work_s"):
        sum(range(200_000))
    with phases.phase("gate_s"):
        pass
    with phases.phase("gate_s"):
        pass
    rec = record(
        step="s", run_id="r", shard=None, startup_s=0.5, work={"fit_s": 0.1, "note": "x"}, phases=phases
    )
    assert rec["work_s"] > 0
    assert "work_s" not in rec["platform"] and set(rec["platform"]) == {"gate_s"}
    assert rec["work"] == {"fit_s": 0.1}  # numbers only
    assert rec["total_s"] == pytest.approx(rec["work_s"] + rec["overhead_s"], abs=0.002)
    assert rec["overhead_s"] >= 0.5  # the start-up is overhead


def test_process_age_is_this_process_age():
    age = process_age_s()
    if age is None:
        pytest.skip("no /proc here")
    assert 0 < age < 24 * 3600


def test_every_step_of_a_run_records_its_phases(small_data, run_pipeline, make_ctx):
    run_pipeline()
    ctx = make_ctx()
    summary = build_summary(ArtifactStore(ctx.env.resolved_artifact_root()), "demo", SESSION, ctx.shard_count)
    enabled = [s.name for s in GRAPH.enabled_steps(ctx.pipeline)]
    for name in enabled:
        rec = summary["steps"][name]["phases"]
        assert rec["work_s"] >= 0 and rec["total_s"] >= rec["work_s"], name
        for gate in GRAPH.gates_on(name):
            assert f"gate_{gate.name.replace(' ', '_')}_s" in rec["platform"], (name, gate.name)
        if GRAPH.step(name).sharded:
            assert len(rec["shards_total_s"]) == ctx.shard_count
        else:
            assert "metric_store_s" in rec["platform"], name
    assert (
        "report_s" in summary["steps"][enabled[-1]]["phases"]["platform"]
    )  # the last step writes the report
    assert "fit_s" in summary["steps"]["train"]["phases"]["work"]
    rows = table_rows(summary["steps"])
    assert [r["step"].split(" ")[0] for r in rows] == enabled


def test_a_step_stopped_by_its_gate_still_records_where_its_time_went(small_data, run_pipeline, make_ctx):
    from batch.execute import run_step

    run_pipeline()
    strict = {"checks.data.distinct_users.min": "1000000"}
    with pytest.raises(CheckFailedError):
        run_step("aggregate", make_ctx(overrides=strict))
    ctx = make_ctx()
    rec = ArtifactStore(ctx.env.resolved_artifact_root()).read_timings("demo", SESSION, "aggregate")
    assert "gate_data_checks_s" in rec["platform"] and "alerts_s" in rec["platform"]
