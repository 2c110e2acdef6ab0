"""batch/capacity.py and `reco plan`: the automatic exact/ANN choice, the plan, bad sizes."""

from __future__ import annotations

import json

import pytest

from batch.capacity import (
    PlanInput,
    choose_method,
    exact_core_seconds,
    load_calibration,
    plan,
    step_cost,
    totals,
)
from batch.cli import main
from batch.errors import ConfigError


@pytest.fixture(scope="module")
def cal():
    return load_calibration()


def test_small_catalogue_stays_exact(cal):
    c = choose_method(25_000, 5_000, 64, 50, "sharded", cal)
    assert c.method == "exact" and "below" in c.reason


def test_large_catalogue_goes_ann_with_figures(cal):
    c = choose_method(100_000_000, 10_000_000, 128, 50, "sharded", cal)
    assert c.method == "ann" and c.exact_seconds > 2 * c.ann_seconds
    assert "exact" in c.reason and "ANN" in c.reason


def test_few_users_do_not_pay_for_a_build(cal):
    # one user against a large catalogue: building the index costs more than scoring once
    assert choose_method(1, 2_000_000, 64, 50, "sharded", cal).method == "exact"


def test_gpu_class_is_labelled_published(cal):
    c = choose_method(1_000_000, 1_000_000, 64, 50, "gpu", cal)
    assert "not measured here" in c.reason


def test_choice_rejects_bad_sizes(cal):
    with pytest.raises(ConfigError, match="items must be a positive integer"):
        choose_method(10, 0, 64, 50, "sharded", cal)
    with pytest.raises(ConfigError, match="unknown resource class"):
        choose_method(10, 10, 64, 50, "huge", cal)


def test_plan_covers_every_step_for_both_methods(cal):
    steps = plan(PlanInput.create("100M", "10M", factors=128), cal)
    names = {(s.step, s.method) for s in steps}
    assert {("aggregate", "-"), ("train", "-"), ("export", "-")} <= names
    for step in ("index", "candidates"):
        assert {(step, "exact"), (step, "ann")} <= names
    # related items are always scored exactly: one row, the same for both methods
    related = [s for s in steps if s.step == "related"]
    assert [s.method for s in related] == ["-"] and any("exact scoring" in n for n in related[0].notes)
    cand = {s.method: s for s in steps if s.step == "candidates"}
    assert cand["exact"].node_hours > cand["ann"].node_hours
    assert all(s.memory_bytes <= 8 * 2**30 for s in steps if s.step == "candidates" and s.method == "ann")
    train = next(s for s in steps if s.step == "train")
    assert any("fold the other users in" in n for n in train.notes)  # 100M users do not fit one highmem pod
    assert totals(steps, "exact")["node_hours"] > totals(steps, "ann")["node_hours"]


def test_fixed_cost_is_paid_per_shard(cal):
    # a sharded step's processes each pay the fixed part: more shards, more total core-seconds, less wall each
    p = PlanInput.create(250_000, 50_000, 6_000_000, 64)
    one, four = step_cost("candidates", p, cal, "exact", 1), step_cost("candidates", p, cal, "exact", 4)
    assert four.wall_seconds(4) < one.wall_seconds(4)
    assert 4 * four.core_seconds > one.core_seconds
    assert four.work_core_s == pytest.approx(one.work_core_s / 4)


def test_ann_candidates_use_their_own_fit(cal):
    # candidates by ANN are costed with the fit from ANN runs (steps.candidates.ann), exact ones with the exact
    # fit; a calibration without the ANN fit falls back to the exact one
    p = PlanInput.create(250_000, 50_000, 6_000_000, 64)
    exact_fit = {"fixed_s": 1.0, "fixed_core_s": 1.0, "unit": "users", "unit_ns": 1_000.0}
    ann_fit = {"fixed_s": 3.0, "fixed_core_s": 2.0, "unit": "users", "unit_ns": 5_000.0}
    both = {**cal, "steps": {**cal["steps"], "candidates": {**exact_fit, "ann": ann_fit}}}
    ann, exact = step_cost("candidates", p, both, "ann", 2), step_cost("candidates", p, both, "exact", 2)
    assert (ann.fixed_s, ann.fixed_core_s) == (3.0, 2.0) and (exact.fixed_s, exact.fixed_core_s) == (1.0, 1.0)
    assert ann.rest_core_s == pytest.approx(5 * exact.rest_core_s)
    exact_only = {**cal, "steps": {**cal["steps"], "candidates": exact_fit}}
    fallback = step_cost("candidates", p, exact_only, "ann", 2)
    assert fallback.rest_core_s == pytest.approx(exact.rest_core_s) and fallback.core_op_s == ann.core_op_s


def test_train_counts_the_offline_evaluations_scoring(cal):
    # batch/evaluation.py recommends for every evaluated user over the whole catalogue: exact scoring that grows
    # with users x items, not with interactions
    large = PlanInput.create(1_000_000, 10**6, 20_000_000, 64, eval_users=300_000)
    off = PlanInput.create(1_000_000, 10**6, 20_000_000, 64, eval_users=0)
    extra = step_cost("train", large, cal).core_op_s - step_cost("train", off, cal).core_op_s
    assert extra == pytest.approx(exact_core_seconds(300_000, 10**6, 64, cal))
    # not given: a share of the users, and the plan's note says it was assumed
    assumed = PlanInput.create(1_000_000, 10**6, 20_000_000, 64)
    assert 0 < assumed.evaluated_users < assumed.users
    train = next(s for s in plan(assumed, cal) if s.step == "train")
    assert any("offline evaluation" in n and "assumed" in n for n in train.notes)
    assert not any(
        "offline evaluation" in n for n in next(s for s in plan(off, cal) if s.step == "train").notes
    )


def test_plan_without_whole_step_costs_names_the_field(cal):
    stale = {k: v for k, v in cal.items() if k != "steps"}
    with pytest.raises(ConfigError, match="steps.aggregate"):
        plan(PlanInput.create(1000, 1000), stale)


def test_gpu_train_is_published(cal):
    steps = plan(PlanInput.create(1_000_000, 100_000, 20_000_000, 64, gpu_train=True), cal)
    train = next(s for s in steps if s.step == "train")
    assert train.resource_class == "gpu" and train.source == "published"


def test_reco_plan_prints_the_table(reco_home, capsys):
    assert main(["plan", "--pipeline", "demo", "--users", "100M", "--items", "10M", "--factors", "128"]) == 0
    out = capsys.readouterr().out
    for step in ("aggregate", "train", "index", "candidates", "related", "export"):
        assert step in out
    assert "node-h" in out and "total with exact" in out and "total with ann" in out


def test_reco_plan_json(reco_home, capsys):
    assert main(["plan", "--pipeline", "demo", "--users", "250000", "--items", "50000", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["input"]["factors"] == 64  # the pipeline's model factors
    assert out["auto"]["method"] in ("exact", "ann") and len(out["steps"]) == 8


@pytest.mark.parametrize(
    "args, field",
    [
        (["--users", "0", "--items", "10"], "users"),
        (["--users", "10", "--items", "-5"], "items"),
        (["--users", "10", "--items", "2.5"], "items"),
        (["--users", "10", "--items", "10", "--interactions", "many"], "interactions"),
        (["--users", "10", "--items", "10", "--factors", "0"], "factors"),
        (["--users", "10", "--items", "10", "--eval-users", "some"], "eval_users"),
    ],
)
def test_reco_plan_bad_sizes_name_the_field(reco_home, capsys, args, field):
    assert main(["plan", "--pipeline", "demo", *args]) == 65
    assert f"{field} must be a positive integer" in capsys.readouterr().err
