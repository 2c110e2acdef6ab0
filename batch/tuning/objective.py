"""The objective: the train step's own offline evaluation of one parameter set.

The split is the train step's (``holdout_split`` of the committed aggregate output for the study date), the fit
and the metrics are ``evaluate`` and ``ranking_metrics``: a tuned value is exactly what the daily train step would
report for those parameters. While a model fits, the metric on the same holdout users is reported every
``tuning.pruner.report_every`` iterations, so the pruner can stop a trial that trails the others.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import optuna
import pandas as pd
import scipy.sparse as sp

import models
from batch.config import PipelineConfig
from batch.datasets import INTERACTIONS, to_csr
from batch.errors import InputDataError
from batch.evaluation import evaluate, holdout_split, ranking_metrics
from batch.storage import ArtifactStore
from batch.tuning.space import SearchSpace


@dataclass
class TuningData:
    """The study date's committed interactions and the train step's temporal split of them."""

    source_run_id: str
    inter: pd.DataFrame
    users: Any  # pyarrow tables of the id maps
    items: Any
    train: sp.csr_matrix
    relevant: sp.csr_matrix

    @classmethod
    def load(cls, store: ArtifactStore, cfg: PipelineConfig, session_date: date) -> TuningData:
        src = store.committed(
            cfg.name,
            INTERACTIONS,
            session_date,
            step="aggregate",
            rerun=f"reco step aggregate --pipeline {cfg.name} --date {session_date}",
        )
        inter = src.read_parquet("interactions.parquet").to_pandas()
        users = src.read_parquet("users.parquet")
        items = src.read_parquet("items.parquet")
        train, relevant = holdout_split(inter, users.num_rows, items.num_rows)
        if relevant.nnz == 0:
            raise InputDataError(
                f"{cfg.name} {session_date}: no user has new items in the {cfg.evaluation.holdout_days} holdout "
                "day(s): nothing to tune against"
            )
        return cls(src.run_id, inter, users, items, train, relevant)

    def full(self) -> sp.csr_matrix:
        return to_csr(self.inter, "weight", self.users.num_rows, self.items.num_rows)

    def eval_users(self) -> np.ndarray:
        """The users ``evaluate`` scores: relevant holdout items and a history in the train matrix."""
        users = np.flatnonzero(np.diff(self.relevant.indptr) > 0).astype(np.int32)
        return users[np.diff(self.train.indptr)[users] > 0]


def metric_value(metrics: dict, metric: str) -> float:
    value = metrics.get(metric)
    if value is None:
        known = ", ".join(k for k in metrics if "@" in k)
        raise ValueError(f"the evaluation has no metric {metric!r}; it has: {known or 'none'}")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{metric} is NaN: {metrics.get('note') or 'no user was evaluated'}")
    return value


def trial_params(cfg: PipelineConfig, model_type: str, searched: dict[str, Any]) -> dict[str, Any]:
    """The full parameters of a trial: the config's own for its model type, the searched ones over them."""
    base = dict(cfg.model.params) if model_type == cfg.model.type else {}
    return {**base, **searched}


class Objective:
    """Callable for ``study.optimize``: suggest, fit with intermediate reports, return the metric."""

    def __init__(
        self,
        cfg: PipelineConfig,
        production: PipelineConfig,
        space: SearchSpace,
        data: TuningData,
        workers: int,
    ):
        self.cfg = cfg
        self.production = (
            production  # the pipeline as the daily run sees it (config + the promoted tuned set)
        )
        self.space = space
        self.data = data
        self.metric = cfg.tuning.metric
        self.ks = cfg.evaluation.ks
        self.k_max = max(self.ks)
        self.users = data.eval_users()
        # the cores are shared by the workers of this machine; implicit would otherwise start one thread per core
        # in every worker (ALS solves each user independently: the thread count does not change the result)
        self.num_threads = max(1, (os.cpu_count() or 1) // max(1, workers))

    def _intermediate(self, iteration: int, model: models.Recommender, trial: optuna.Trial) -> None:
        if iteration % self.cfg.tuning.pruner.report_every:
            return
        train = self.data.train
        ids, _ = model.recommend(self.users, train[self.users], self.k_max, filter_already_liked_items=True)
        value = ranking_metrics(
            ids, self.data.relevant[self.users], ks=self.ks, n_catalog_items=train.shape[1]
        )
        trial.report(metric_value(value, self.metric), step=iteration)
        if trial.should_prune():
            raise optuna.TrialPruned(
                f"{self.metric} below the median of earlier trials at iteration {iteration}"
            )

    def __call__(self, trial: optuna.Trial) -> float:
        model_type, searched = self.space.suggest(trial)
        params = trial_params(self.production, model_type, searched)
        trial.set_user_attr("model_type", model_type)
        duplicate = self._duplicate_of(trial)
        if duplicate is not None:  # small spaces repeat points: the result is known, do not fit again
            trial.set_user_attr("duplicate_of", duplicate.number)
            return float(duplicate.value)
        if "num_threads" in models.MODEL_TYPES[model_type].param_specs:
            params["num_threads"] = self.num_threads
        try:
            with models.iteration_callback(lambda it, model: self._intermediate(it, model, trial)):
                metrics, _ = evaluate(
                    model_type,
                    params,
                    self.cfg.model.seed,
                    self.data.train,
                    self.data.relevant,
                    self.ks,
                )
            value = metric_value(metrics, self.metric)
        except optuna.TrialPruned:
            raise
        except Exception as e:  # recorded with the trial; the study goes on (optimize(catch=...))
            trial.set_user_attr("fail_reason", f"{type(e).__name__}: {e}"[:500])
            raise
        trial.set_user_attr(
            "metrics", {k: v for k, v in metrics.items() if isinstance(v, int | float) and not math.isnan(v)}
        )
        return value

    def _duplicate_of(self, trial: optuna.Trial) -> optuna.trial.FrozenTrial | None:
        for other in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            if other.params == trial.params and other.number != trial.number:
                return other
        return None


def score(
    cfg: PipelineConfig, model_type: str, params: dict[str, Any], data: TuningData
) -> tuple[dict, models.Recommender]:
    """The final comparison: the train step's evaluate on the study's split, with the pipeline's seed."""
    return evaluate(model_type, params, cfg.model.seed, data.train, data.relevant, cfg.evaluation.ks)
