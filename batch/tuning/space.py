"""The search space: per model type, the parameters a study may vary and their ranges.

The pipeline config's ``tuning.search_space`` (model type -> parameter -> range) replaces the defaults below;
more than one model type makes the type itself a choice. Every name is checked against the model's own
parameter declarations (``models``), and the production parameters must lie inside the space, so that the
production trial Optuna is given first is a valid point of it.
"""

from __future__ import annotations

from typing import Any

import optuna

import models
from batch.config import PipelineConfig, SearchParam
from batch.errors import ConfigError

# Defaults per model type: iALS papers (Rendle et al. 2022) tune factors, regularization and the confidence
# scaling, and the weighting of interactions (BM25 / log) matters as much; iterations are kept modest because
# pruning watches them.
DEFAULT_SPACES: dict[str, dict[str, dict[str, Any]]] = {
    "als": {
        "factors": {"type": "int", "low": 16, "high": 128, "log": True},
        "regularization": {"type": "float", "low": 1e-3, "high": 1.0, "log": True},
        "alpha": {"type": "float", "low": 0.1, "high": 50.0, "log": True},
        "iterations": {"type": "int", "low": 5, "high": 25},
        "weighting": {"type": "categorical", "choices": ["none", "log", "bm25"]},
    },
    "bpr": {
        "factors": {"type": "int", "low": 16, "high": 128, "log": True},
        "learning_rate": {"type": "float", "low": 1e-3, "high": 0.1, "log": True},
        "regularization": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
        "iterations": {"type": "int", "low": 20, "high": 200, "log": True},
    },
}

MODEL_TYPE_PARAM = "model_type"  # the Optuna parameter holding the type when there is more than one


class SearchSpace:
    """model type -> {parameter -> SearchParam}, validated against the models' parameter declarations."""

    def __init__(self, spaces: dict[str, dict[str, SearchParam]], source: str):
        self.source = source
        if not spaces:
            raise ConfigError(f"{source}: the search space is empty", hint="name at least one parameter")
        for model_type, params in spaces.items():
            if model_type not in models.MODEL_TYPES:
                raise ConfigError(
                    f"{source}.{model_type}: unknown model type; known: {', '.join(sorted(models.MODEL_TYPES))}"
                )
            if not params:
                raise ConfigError(f"{source}.{model_type}: no parameter to search")
            specs = models.MODEL_TYPES[model_type].param_specs
            for name, p in params.items():
                if name not in specs or name == "seed":
                    known = ", ".join(sorted(set(specs) - {"seed"}))
                    raise ConfigError(
                        f"{source}.{model_type}.{name}: not a parameter of model {model_type!r}; known: {known}"
                    )
                for value in self._corners(p):
                    try:
                        specs[name].validate(name, value)
                    except ValueError as e:
                        raise ConfigError(f"{source}.{model_type}.{name}: {e}") from None
        self.spaces = spaces

    @staticmethod
    def _corners(p: SearchParam) -> list[Any]:
        if p.type == "categorical":
            return list(p.choices or [])
        cast = int if p.type == "int" else float
        return [cast(p.low), cast(p.high)]

    @classmethod
    def for_pipeline(cls, cfg: PipelineConfig) -> SearchSpace:
        if cfg.tuning.search_space is not None:
            return cls(dict(cfg.tuning.search_space), f"{cfg.name}: tuning.search_space")
        if cfg.model.type not in DEFAULT_SPACES:
            raise ConfigError(
                f"{cfg.name}: model type {cfg.model.type!r} has no default search space",
                hint="set tuning.search_space in the pipeline config",
            )
        spaces = {cfg.model.type: {k: SearchParam(**v) for k, v in DEFAULT_SPACES[cfg.model.type].items()}}
        return cls(spaces, f"{cfg.name}: default search space of {cfg.model.type!r}")

    @property
    def model_types(self) -> list[str]:
        return list(self.spaces)

    def describe(self) -> dict:
        """JSON-able form: recorded with the study, so a rerun with another space is refused."""
        return {
            t: {k: v.model_dump(exclude_none=True) for k, v in ps.items()} for t, ps in self.spaces.items()
        }

    def suggest(self, trial: optuna.Trial) -> tuple[str, dict[str, Any]]:
        """(model type, the searched parameters) of a trial."""
        types = self.model_types
        model_type = trial.suggest_categorical(MODEL_TYPE_PARAM, types) if len(types) > 1 else types[0]
        params: dict[str, Any] = {}
        for name, p in self.spaces[model_type].items():
            # names are prefixed by the type when types are mixed: the same name is another dimension per type
            key = f"{model_type}.{name}" if len(types) > 1 else name
            if p.type == "categorical":
                params[name] = trial.suggest_categorical(key, p.choices)
            elif p.type == "int":
                step = int(p.step) if p.step else 1
                params[name] = trial.suggest_int(key, int(p.low), int(p.high), step=step, log=p.log)
            else:
                params[name] = trial.suggest_float(key, float(p.low), float(p.high), step=p.step, log=p.log)
        return model_type, params

    def as_trial_params(self, model_type: str, params: dict[str, Any]) -> dict[str, Any]:
        """A fixed point (e.g. the production parameters) as the Optuna parameters `enqueue_trial` takes.

        Only the searched names are taken; the point must lie inside the space."""
        if model_type not in self.spaces:
            raise ConfigError(
                f"{self.source}: the production model type {model_type!r} is not in the search space "
                f"({', '.join(self.model_types)}): the production parameters cannot be scored in the study"
            )
        defaults = {k: s.default for k, s in models.MODEL_TYPES[model_type].param_specs.items()}
        out: dict[str, Any] = {}
        if len(self.spaces) > 1:
            out[MODEL_TYPE_PARAM] = model_type
        for name, p in self.spaces[model_type].items():
            value = params.get(name, defaults[name])
            inside = (
                value in (p.choices or []) if p.type == "categorical" else p.low <= value <= p.high  # type: ignore[operator]
            )
            if not inside:
                raise ConfigError(
                    f"{self.source}.{model_type}.{name}: the production value {value!r} is outside the "
                    "search space",
                    hint="widen the range so that the production parameters are one of its points",
                )
            key = f"{model_type}.{name}" if len(self.spaces) > 1 else name
            out[key] = value
        return out

    def from_trial_params(self, trial_params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The inverse of as_trial_params: (model type, parameters) of a finished trial."""
        types = self.model_types
        model_type = trial_params.get(MODEL_TYPE_PARAM, types[0]) if len(types) > 1 else types[0]
        prefix = f"{model_type}." if len(types) > 1 else ""
        params = {
            k[len(prefix) :]: v
            for k, v in trial_params.items()
            if k != MODEL_TYPE_PARAM and k.startswith(prefix)
        }
        return model_type, params
