"""reco tune on the embedded storage (journal file, parallel local workers): budget, champion/challenger,
promotion and non-promotion, rollback, the daily run picking up the promoted set, bad input."""

from __future__ import annotations

import argparse
import json
import logging

import optuna
import pytest
from tune_helpers import SESSION, SMALL

from batch.cli import main
from batch.cli.common import context_from_args
from batch.config import load_environment, load_pipeline
from batch.errors import ConfigError
from batch.storage import ArtifactStore
from batch.tuning import promotion
from batch.tuning.space import SearchSpace
from batch.tuning.storage import StorageUnreachableError, open_storage, storage_url


def _store() -> ArtifactStore:
    return ArtifactStore(load_environment("local").resolved_artifact_root())


def _study(name: str = f"demo-{SESSION}") -> optuna.Study:
    cfg = load_pipeline("demo")
    return optuna.load_study(study_name=name, storage=open_storage(storage_url(cfg), cfg))


def _daily_ctx(*sets: str):
    args = argparse.Namespace(pipeline="demo", env="local", date=SESSION, overrides=list(sets))
    return context_from_args(args)


def test_parallel_study_promotes_and_the_daily_run_applies_it(tune):
    code, report = tune("--trials", "6", "--workers", "2")
    assert code == 0
    study = _study()
    trials = study.get_trials()
    # the budget holds across the two workers, and the production parameters were trial 0
    assert len(trials) == 6 and report["trials"]["finished"] == 6
    assert trials[0].user_attrs["role"] == "production"
    assert trials[0].params["factors"] == 16 and trials[0].params["iterations"] == 3
    assert {t.user_attrs["worker"] for t in trials} and all("worker" in t.user_attrs for t in trials)
    # champion vs challenger were scored again on the same split: the tuned value is the best trial's value
    assert report["tuned"]["ndcg@10"] == pytest.approx(study.best_value)
    assert report["gain"] == pytest.approx(report["tuned"]["ndcg@10"] / report["production"]["ndcg@10"] - 1)
    assert report["promoted"] is (report["gain"] >= 0.02), report["reason"]
    if not report["promoted"]:
        pytest.skip("this seed found no 2% gain; promotion is covered by the other tests")
    overrides, prov = promotion.tuned_overrides(_store(), "demo")
    assert prov["study"] == f"demo-{SESSION}" and prov["trial"] == report["best_trial"]
    ctx = _daily_ctx()
    best = report["tuned"]["params"]
    assert ctx.pipeline.model.params["factors"] == best["factors"]
    assert ctx.pipeline.model.params["weighting"] == best["weighting"]
    recorded = ctx.run_record()["overrides"]
    assert json.loads(recorded[promotion.PROVENANCE_KEY])["gain"] == pytest.approx(report["gain"])
    # an explicit --set still wins over the tuned set
    assert _daily_ctx("model.factors=12").pipeline.model.params["factors"] == 12


def test_promotion_rollback_and_an_invalid_tuned_set(tune):
    # production parameters made poor on purpose (heavy regularization): the tuned set beats them
    poor = ("--set", "model.regularization=1.0", "--set", "tuning.min_gain=0")
    code, first = tune("--trials", "5", "--workers", "1", *poor)
    assert code == 0 and first["promoted"], first["reason"]
    code, second = tune("--trials", "5", "--workers", "1", *poor, "--study", "again")
    assert code == 0
    pointer = promotion.read_pointer(_store(), "demo")
    if second["promoted"]:
        assert pointer["current"]["study"] == "again" and pointer["history"][-1]["study"] == f"demo-{SESSION}"
        assert main(["tune", "--pipeline", "demo", "--rollback"]) == 0
        assert promotion.read_pointer(_store(), "demo")["current"]["study"] == f"demo-{SESSION}"
    assert main(["tune", "--pipeline", "demo", "--rollback"]) == 0
    assert promotion.tuned_overrides(_store(), "demo") == ({}, None)
    assert _daily_ctx().pipeline.model.params["factors"] == load_pipeline("demo").model.params["factors"]
    assert main(["tune", "--pipeline", "demo", "--rollback"]) == 1  # nothing left to roll back

    # a tuned set that no longer validates against the config (here: a value the model now refuses) is ignored
    # with a warning, and the config's own parameters are used
    promotion.promote(
        _store(),
        "demo",
        {
            "dt": SESSION,
            "study": "s",
            "trial": 1,
            "gain": 0.1,
            "model_type": "als",
            "params": {"alpha": -1.0},
        },
    )
    seen: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: seen.append(record.getMessage())
    logging.getLogger("batch.cli.common").addHandler(handler)
    try:
        ctx = _daily_ctx()
    finally:
        logging.getLogger("batch.cli.common").removeHandler(handler)
    assert ctx.pipeline.model.params == load_pipeline("demo").model.params
    assert promotion.PROVENANCE_KEY not in ctx.overrides
    assert any("tuned parameter set of demo (study s) is ignored" in m for m in seen), seen


def test_no_promotion_below_the_margin_and_dry_run(tune):
    code, report = tune("--trials", "4", "--workers", "1", "--set", "tuning.min_gain=100")
    assert code == 0 and report["promoted"] is False
    assert (
        "below the required" in report["reason"] or "production parameters are the best" in report["reason"]
    )
    code, report = tune(
        "--trials", "4", "--workers", "1", "--dry-run", "--study", "dry", "--set", "model.regularization=1.0"
    )
    assert code == 0 and report["promoted"] is False and report["dry_run"] is True
    assert promotion.tuned_overrides(_store(), "demo") == ({}, None)


def test_a_late_or_second_worker_does_no_harm(tune):
    assert tune("--trials", "3", "--workers", "1")[0] == 0
    # the budget is spent: a worker started afterwards runs nothing
    code = main(["tune", "--pipeline", "demo", "--date", SESSION, *SMALL, "--trials", "3", "--stage", "work"])
    assert code == 0 and len(_study().get_trials()) == 3


def test_failing_trials_are_recorded_and_the_study_goes_on(tune):
    # ndcg@5 is not among evaluation.ks: every trial raises; each is FAIL with its reason, all are run
    code, report = tune("--trials", "3", "--workers", "1", "--set", "tuning.metric=ndcg@5")
    assert code == 0 and report["promoted"] is False
    assert report["trials"]["fail"] == 3 and report["reason"] == "no trial completed"
    assert all("no metric 'ndcg@5'" in f["reason"] for f in report["failures"])


def test_study_name_collision_with_other_settings_is_refused(tune):
    assert tune("--trials", "2", "--workers", "1")[0] == 0
    code, _ = tune("--trials", "2", "--workers", "1", "--set", "evaluation.ks=[10]")
    assert code == 65


@pytest.mark.parametrize(
    "space, message",
    [
        ("{}", "the search space is empty"),
        ("{als: {}}", "no parameter to search"),
        ("{als: {depth: {type: int, low: 1, high: 3}}}", "not a parameter of model 'als'"),
        ("{als: {factors: {type: int, low: 0, high: 3}}}", "factors"),
        ("{als: {factors: {type: int, low: 20, high: 30}}}", "outside the search space"),
        ("{nope: {factors: {type: int, low: 1, high: 3}}}", "unknown model type"),
    ],
)
def test_bad_search_spaces_are_refused(space, message):
    cfg = load_pipeline("demo", "local", {"tuning.search_space": space})
    with pytest.raises(ConfigError, match=message):
        s = SearchSpace.for_pipeline(cfg)
        if space.startswith("{als: {factors: {type: int, low: 20"):
            s.as_trial_params("als", cfg.model.params)


def test_bad_range_is_refused_at_config_load():
    with pytest.raises(ConfigError, match="low .* is above high"):
        load_pipeline(
            "demo", "local", {"tuning.search_space": "{als: {alpha: {type: float, low: 2, high: 1}}}"}
        )


def test_unreachable_database_names_the_url_without_credentials():
    cfg = load_pipeline("demo")
    url = "postgresql+psycopg://tuner:s3cretpass@127.0.0.1:1/optuna"
    with pytest.raises(StorageUnreachableError) as e:
        open_storage(url, cfg)
    assert "127.0.0.1:1/optuna" in str(e.value) and "s3cretpass" not in str(e.value)
