"""A tuning study: its settings, preparing it (production parameters first), and finishing it (champion vs
challenger on the same split, the model gate, promotion).

The study is named ``<pipeline>-<date>``. Its settings (search space, metric, evaluation, overrides, seed, the
aggregate run it tunes against, the production parameters) are recorded with it; a study of the same name with
other settings is refused, the same settings resume it (finished trials count towards the budget).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from batch.checks import model_gate
from batch.config import PipelineConfig
from batch.errors import ConfigError, RecoError
from batch.storage import ArtifactStore, new_run_id
from batch.tuning import promotion
from batch.tuning.objective import TuningData, metric_value, score, trial_params
from batch.tuning.space import SearchSpace
from batch.tuning.storage import BudgetLock, open_storage, redact_url
from batch.tuning.workers import fail_stale

log = logging.getLogger(__name__)

REPORT_DATASET = "tuning"  # <root>/<pipeline>/tuning/dt=<date>/: report.json of each finished study


@dataclass
class TuneSetup:
    """Everything a stage of `reco tune` needs, built the same way in every process (CLI, worker, pod)."""

    cfg: PipelineConfig  # the config with the explicit --set options
    production: PipelineConfig  # what the daily run uses: config + the tuned set in service + --set
    session_date: date
    store: ArtifactStore
    storage_url: str
    study_name: str
    trials: int
    workers: int
    overrides: dict[str, str] = field(default_factory=dict)
    production_provenance: dict | None = None

    @property
    def space(self) -> SearchSpace:
        return SearchSpace.for_pipeline(self.cfg)

    def storage(self):
        return open_storage(self.storage_url, self.cfg)

    def sampler(self, worker_index: int = 0) -> optuna.samplers.BaseSampler:
        return optuna.samplers.TPESampler(
            seed=self.cfg.tuning.seed + worker_index, constant_liar=True, multivariate=True
        )

    def pruner(self) -> optuna.pruners.BasePruner:
        p = self.cfg.tuning.pruner
        if not p.enabled:
            return optuna.pruners.NopPruner()
        return optuna.pruners.MedianPruner(
            n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps
        )

    def load_study(self, worker_index: int = 0) -> optuna.Study:
        try:
            return optuna.load_study(
                study_name=self.study_name,
                storage=self.storage(),
                sampler=self.sampler(worker_index),
                pruner=self.pruner(),
            )
        except KeyError:
            raise RecoError(
                f"no study {self.study_name!r} in {redact_url(self.storage_url)}",
                hint="run `reco tune` (or its prepare stage) first",
            ) from None


def settings(setup: TuneSetup, data: TuningData) -> dict:
    cfg = setup.cfg
    prod = setup.production.model
    return {
        "pipeline": cfg.name,
        "date": setup.session_date.isoformat(),
        "metric": cfg.tuning.metric,
        "search_space": setup.space.describe(),
        "evaluation": {"holdout_days": cfg.evaluation.holdout_days, "ks": cfg.evaluation.ks},
        "lookback_days": cfg.aggregate.lookback_days,
        "seed": cfg.model.seed,
        "sampler_seed": cfg.tuning.seed,
        "overrides": dict(sorted(setup.overrides.items())),
        "aggregate_run_id": data.source_run_id,
        "production": {"model_type": prod.type, "params": dict(sorted(prod.params.items()))},
    }


def _fingerprint(doc: dict) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def prepare(setup: TuneSetup, data: TuningData) -> optuna.Study:
    """Create (or resume) the study; the production parameters are its first trial. Idempotent and safe to run
    from several processes at once (under the budget lock)."""
    wanted = settings(setup, data)
    prod_params = setup.space.as_trial_params(setup.production.model.type, setup.production.model.params)
    storage = setup.storage()
    lock = BudgetLock(setup.storage_url, setup.study_name)
    try:
        with lock:
            study = optuna.create_study(
                study_name=setup.study_name,
                storage=storage,
                direction="maximize",
                sampler=setup.sampler(),
                pruner=setup.pruner(),
                load_if_exists=True,
            )
            recorded = study.user_attrs.get("settings")
            if recorded is None:
                study.set_user_attr("settings", wanted)
                study.set_user_attr("fingerprint", _fingerprint(wanted))
                study.set_user_attr("production_params", prod_params)
                study.set_user_attr("production_provenance", setup.production_provenance)
                study.enqueue_trial(prod_params, user_attrs={"role": "production"})
            elif study.user_attrs.get("fingerprint") != _fingerprint(wanted):
                differ = sorted(k for k in set(wanted) | set(recorded) if wanted.get(k) != recorded.get(k))
                raise ConfigError(
                    f"study {setup.study_name!r} in {redact_url(setup.storage_url)} exists with other settings "
                    f"(differing: {', '.join(differ)})",
                    hint="rerun with the same settings to resume it, or pass --study NAME for a new study",
                )
            study.set_user_attr("budget", setup.trials)
    finally:
        lock.close()
    return study


def counts(study: optuna.Study) -> dict[str, int]:
    trials = study.get_trials(deepcopy=False)
    out = {s.name.lower(): 0 for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    for t in trials:
        key = t.state.name.lower()
        out[key] = out.get(key, 0) + 1
    out["finished"] = out["complete"] + out["pruned"] + out["fail"]
    return out


def wait_for_running(study: optuna.Study, storage_url: str, timeout_s: float, poll_s: float = 1.0) -> None:
    """Until no trial is RUNNING: dead workers' trials are failed by heartbeat / process id meanwhile."""
    deadline = time.time() + timeout_s
    while True:
        fail_stale(study, storage_url)
        if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            return
        if time.time() > deadline:
            running = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
            log.warning("trials still running at finish: %s", running)
            return
        time.sleep(poll_s)


def _gate(setup: TuneSetup, data: TuningData, model, metrics: dict, pop: dict) -> list:
    """The model gate (checks.model) on the model the daily run would serve with the tuned set."""
    cfg = setup.production
    refit = cfg.evaluation.refit_iterations
    served = model.fit_more(data.full(), iterations=refit) if refit else model
    items = data.items.to_pandas()
    cand = model_gate.Candidate(
        model=served,
        metrics={"model": metrics, "popularity_baseline": pop},
        model_version=f"{setup.study_name}-tuned",
        user_ids=data.users.column("user_id").to_numpy(),
        item_ids=items["item_id"].to_numpy(),
        seen=data.full(),
        unavailable=items.loc[~items["available"], "item_idx"].to_numpy(np.int32)
        if "available" in items
        else np.array([], np.int32),
    )
    results, _ = model_gate.run_gate(
        cand, setup.store, cfg.name, setup.session_date, cfg.checks.model, seed=cfg.model.seed
    )
    return results


def finish(setup: TuneSetup, data: TuningData, *, dry_run: bool, wait_s: float = 600.0) -> dict:
    """Score the best trial and production again (same split, same seed), gate, promote or not; the report."""
    study = setup.load_study()
    wait_for_running(study, setup.storage_url, wait_s)
    cfg = setup.cfg
    metric = cfg.tuning.metric
    trials = study.get_trials(deepcopy=False)
    report: dict[str, Any] = {
        "study": setup.study_name,
        "pipeline": cfg.name,
        "date": setup.session_date.isoformat(),
        "storage": redact_url(setup.storage_url),
        "metric": metric,
        "budget": setup.trials,
        "trials": counts(study),
        "failures": [
            {"trial": t.number, "reason": t.user_attrs.get("fail_reason", "unknown")}
            for t in trials
            if t.state == TrialState.FAIL
        ],
        "dry_run": dry_run,
        "promoted": False,
    }
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        report["reason"] = "no trial completed"
        return _write_report(setup, report)
    best = max(complete, key=lambda t: t.value)
    space = setup.space
    best_type, best_searched = space.from_trial_params(best.params)
    best_params = trial_params(setup.production, best_type, best_searched)
    prod = setup.production.model
    prod_metrics, _ = score(setup.production, prod.type, dict(prod.params), data)
    tuned_metrics, tuned_model = score(setup.production, best_type, best_params, data)
    pop_metrics, _ = score(setup.production, "popularity", {}, data)
    prod_value, tuned_value = metric_value(prod_metrics, metric), metric_value(tuned_metrics, metric)
    gain = tuned_value / prod_value - 1 if prod_value > 0 else float("inf")
    report.update(
        {
            "best_trial": best.number,
            "best_trial_value": best.value,
            "production": {"model_type": prod.type, "params": dict(prod.params), metric: prod_value},
            "tuned": {"model_type": best_type, "params": best_params, metric: tuned_value},
            "popularity_baseline": {metric: pop_metrics.get(metric)},
            "gain": gain,
            "min_gain": cfg.tuning.min_gain,
        }
    )
    if best_type == prod.type and best_params == dict(prod.params):
        report["reason"] = "the production parameters are the best trial"
        return _write_report(setup, report)
    if gain < cfg.tuning.min_gain:
        report["reason"] = f"gain {gain:+.2%} is below the required {cfg.tuning.min_gain:.2%}"
        return _write_report(setup, report)
    gate = _gate(setup, data, tuned_model, tuned_metrics, pop_metrics)
    report["gate"] = [r.line() for r in gate]
    failed = [r.line() for r in gate if r.status == "fail"]
    if failed:
        report["reason"] = "the model gate failed: " + "; ".join(failed)
        return _write_report(setup, report)
    if dry_run:
        report["reason"] = f"dry run: gain {gain:+.2%} would be promoted"
        return _write_report(setup, report)
    entry = promotion.promote(
        setup.store,
        cfg.name,
        {
            "dt": setup.session_date.isoformat(),
            "study": setup.study_name,
            "trial": best.number,
            "gain": gain,
            "model_type": best_type,
            "params": {k: v for k, v in best_params.items() if k != "num_threads"},
            "metric": metric,
            "production_value": prod_value,
            "tuned_value": tuned_value,
        },
    )
    report["promoted"] = True
    report["reason"] = f"gain {gain:+.2%} >= {cfg.tuning.min_gain:.2%} and the model gate passed"
    report["promotion"] = promotion.provenance(entry)
    return _write_report(setup, report)


def _write_report(setup: TuneSetup, report: dict) -> dict:
    with setup.store.writer(setup.cfg.name, REPORT_DATASET, setup.session_date, run_id=new_run_id()) as w:
        w.write_json("report.json", report)
        w.metadata.update({"promoted": report["promoted"], "study": report["study"]})
    return report


def read_report(store: ArtifactStore, pipeline: str, session_date: date) -> dict:
    return store.committed(
        pipeline,
        REPORT_DATASET,
        session_date,
        step="tune",
        rerun=f"reco tune --pipeline {pipeline} --date {session_date}",
    ).read_json("report.json")
