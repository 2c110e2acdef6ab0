"""Pipeline and environment configuration: layered YAML, validated at load, errors that name file and field.

Layout (one obvious place): ``config/pipelines/<name>.yaml`` holds one recommender; its top-level ``envs:`` map
holds per-environment overrides (local, dev, staging, prod) deep-merged over the base values.
``config/environments.yaml`` holds what differs between environments for every pipeline: runner, warehouse,
artifact root, Digdag endpoint, Slack channel. ``--set key.path=value`` overrides one value for one run; the run
records every override it was given.

The config directory is ``$RECO_CONFIG_DIR`` when set (the ConfigMap mounted in a container), else ``config/``
in the project checkout.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import string
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

import models  # the zoo validates its own parameters
from batch.errors import ConfigError
from models.ann import AnnParams

ENVIRONMENTS = ("local", "dev", "staging", "prod")
PROJECT_ROOT = Path(__file__).resolve().parents[1]
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_-]*){0,2}$")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def config_dir() -> Path:
    return Path(os.environ.get("RECO_CONFIG_DIR") or PROJECT_ROOT / "config")


def sql_dir() -> Path:
    """A pipeline's own SQL for its source (``source.events_sql`` / ``items_sql``): ``<config dir>/sql/``."""
    return config_dir() / "sql"


def reco_home() -> Path:
    """Where all local state lives: ``$RECO_HOME`` or ``var/`` under the current directory."""
    return Path(os.environ.get("RECO_HOME") or Path.cwd() / "var").resolve()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _table_name(v: str) -> str:
    if not _IDENTIFIER.match(v):
        raise ValueError(f"not a table name: {v!r}")
    return v


def _resource_class(v: str) -> str:
    if not _NAME.match(v.replace("-", "_")):
        raise ValueError(f"not a resource class name: {v!r}")
    return v


# A warehouse table: name, dataset.name or project.dataset.name (validated: it is spliced into SQL).
TableName = Annotated[str, AfterValidator(_table_name)]

_SQL_FILE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\.sql$")
# The placeholders a source SQL file may use: the pipeline's raw tables.
SOURCE_PLACEHOLDERS = ("events_table", "items_table")


def read_source_sql(name: str) -> str:
    """The text of ``<config dir>/sql/<name>``; a missing or unreadable file is an error naming its path."""
    path = sql_dir() / name
    try:
        return path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: SQL file not found") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the SQL file: {e}") from None


def sql_placeholders(text: str) -> set[str]:
    """The ``{name}`` placeholders of a SQL text (``{{`` and ``}}`` are literal braces)."""
    return {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}


def _source_sql_file(v: str) -> str:
    if not _SQL_FILE.match(v):
        raise ValueError(
            f"{v!r} is not a file name under {sql_dir()}/ (a name ending in .sql, no directories)"
        )
    path = sql_dir() / v
    try:
        unknown = sql_placeholders(read_source_sql(v)) - set(SOURCE_PLACEHOLDERS)
    except ConfigError as e:
        raise ValueError(str(e)) from None
    except ValueError as e:  # an unbalanced brace
        raise ValueError(f"{path}: {e} (write a literal brace as {{{{ or }}}})") from None
    if unknown:
        raise ValueError(
            f"{path}: unknown placeholder(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join('{' + p + '}' for p in SOURCE_PLACEHOLDERS)}"
        )
    return v


# A SQL file under config/sql/ (it travels with the config: the ConfigMap reco-sql in a Job).
SqlFileName = Annotated[str, AfterValidator(_source_sql_file)]


class SourceConfig(_Strict):
    events_table: TableName
    items_table: TableName | None = None
    # A pipeline's own relations over its raw tables, as BigQuery SQL files under config/sql/ naming the tables as
    # {events_table} / {items_table}: events_sql yields (user_id, item_id, event_type, ts) and items_sql yields
    # (item_id, available_from, available_until); the aggregate reads them in place of the tables.
    events_sql: SqlFileName | None = None
    items_sql: SqlFileName | None = None
    timezone: str = "Asia/Tokyo"

    @model_validator(mode="after")
    def _sql_tables(self) -> SourceConfig:
        for field in ("events_sql", "items_sql"):
            name = getattr(self, field)
            if name and not self.items_table and "items_table" in sql_placeholders(read_source_sql(name)):
                raise ValueError(
                    f"{field}: {sql_dir() / name} reads {{items_table}}, but items_table is not set"
                )
        return self

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown timezone {v!r}") from e
        return v


class AggregateConfig(_Strict):
    lookback_days: int = Field(28, ge=1, le=3650)
    event_weights: dict[str, float] = Field(
        default_factory=lambda: {"view": 1.0, "like": 3.0, "bookmark": 5.0}
    )
    min_user_events: int = Field(1, ge=1)
    min_item_users: int = Field(1, ge=1)

    @field_validator("event_weights")
    @classmethod
    def _weights(cls, v: dict[str, float]) -> dict[str, float]:
        if not v:
            raise ValueError("at least one event type needs a weight")
        for name, w in v.items():
            if w <= 0:
                raise ValueError(f"weight of {name!r} must be > 0, got {w}")
        return v


class EvaluationConfig(_Strict):
    enabled: bool = True
    holdout_days: int = Field(1, ge=1, le=3650)
    ks: list[int] = Field(default_factory=lambda: [10, 20])
    # The evaluated model never saw the holdout days. The served model continues from it for this many passes over
    # the whole window (warm start: measured the same next-day nDCG as a fresh fit at about a third of its
    # time); null: fit the served model from scratch with model.params.
    refit_iterations: int | None = Field(3, ge=1, le=1000)
    # Users scored by the offline evaluation: a seeded sample of at most this many of the users with relevant
    # holdout items (null: all of them). Scoring every one of them exactly is most of the train pod's CPU at
    # 100M users (docs/scale.md); at 100k users nDCG@10's standard error is already about 0.001.
    max_users: int | None = Field(100_000, ge=1)

    @field_validator("ks")
    @classmethod
    def _ks(cls, v: list[int]) -> list[int]:
        if not v or any(k < 1 for k in v):
            raise ValueError("ks must be a non-empty list of positive integers")
        return sorted(set(v))


class ModelConfig(_Strict):
    type: str = "als"
    params: dict[str, Any] = Field(default_factory=dict)
    seed: int = 42

    @model_validator(mode="after")
    def _known(self) -> ModelConfig:
        try:
            models.create_model(self.type, seed=self.seed, **self.params)
        except (ValueError, TypeError) as e:
            raise ValueError(str(e)) from e
        return self


class CandidatesConfig(_Strict):
    n: int = Field(50, ge=1, le=1000)
    # candidate sources by name (steps of the graph that declare `source=`; checked against the graph on load)
    sources: list[str] = Field(default_factory=lambda: ["personal", "related"])
    related_n: int = Field(20, ge=1, le=1000)
    batch_size: int = Field(2048, ge=1, le=1_000_000)
    shard_count: int = Field(1, ge=1, le=10_000)
    # user candidates: exact scoring, an ANN index (the index step builds it, the index check gates it), or auto:
    # batch/capacity.choose_method decides per run from the model's size (recorded in the index step's summary)
    method: Literal["exact", "ann", "auto"] = "exact"
    ann: dict[str, Any] = Field(
        default_factory=dict
    )  # models.ann.AnnParams fields; seed defaults to model.seed

    @field_validator("ann")
    @classmethod
    def _ann(cls, v: dict[str, Any]) -> dict[str, Any]:
        AnnParams.from_dict(v)  # unknown or out-of-range fields are errors now, not at the index step
        return v


class ExportConfig(_Strict):
    table: TableName
    destinations: list[Literal["warehouse", "parquet"]] = Field(
        default_factory=lambda: ["warehouse", "parquet"]
    )
    # publishes this many days before the latest one stay restorable (reco rollback): GC keeps their files
    retention_days: int = Field(30, ge=1)


class PublishCheckConfig(_Strict):
    min_rows: int = Field(1, ge=1)
    min_user_coverage: float = Field(0.95, ge=0, le=1)
    # bounds relative to the previous publish (skipped on the first publish)
    max_row_change: float = Field(0.5, ge=0)
    max_user_change: float = Field(0.5, ge=0)


Severity = Literal["fail", "warn"]


class _Check(_Strict):
    enabled: bool = True
    severity: Severity = "fail"


class FreshnessCheckConfig(_Check):
    # the latest valid event must be at most this many hours before the end of the session date (its timezone)
    max_lag_hours: float = Field(12.0, gt=0)
    # judged against the source's own rate: a gap in which fewer events than this were expected (trailing median
    # per-day volume x lag) is not evidence of a stale source (sparse or replayed sources)
    min_expected_events: float = Field(50.0, ge=0)


class VolumeCheckConfig(_Check):
    # events on the session date vs the trailing median per-day volume of the previous `window_days` days
    window_days: int = Field(7, ge=1, le=366)
    min_ratio: float = Field(0.5, ge=0)
    max_ratio: float = Field(3.0, gt=0)
    min_history_days: int = Field(3, ge=1)  # fewer previous days with data: skipped
    min_median_events: float = Field(100.0, ge=0)  # a smaller median is noise, not a baseline: skipped


class InvalidRowsCheckConfig(_Check):
    max_ratio: float = Field(0.05, ge=0, le=1)  # dropped rows (any reason) / rows scanned


class MinCountCheckConfig(_Check):
    min: int = Field(1, ge=0)


class DataChecksConfig(_Strict):
    freshness: FreshnessCheckConfig = Field(default_factory=FreshnessCheckConfig)
    volume: VolumeCheckConfig = Field(default_factory=VolumeCheckConfig)
    invalid_rows: InvalidRowsCheckConfig = Field(default_factory=InvalidRowsCheckConfig)
    distinct_users: MinCountCheckConfig = Field(default_factory=MinCountCheckConfig)
    distinct_items: MinCountCheckConfig = Field(default_factory=MinCountCheckConfig)


class MetricDropCheckConfig(_Check):
    metric: str = "ndcg@10"
    # relative drop allowed against the promoted model's value: new >= promoted * (1 - max_relative_drop)
    max_relative_drop: float = Field(0.2, ge=0, le=1)
    min_users_evaluated: int = Field(20, ge=0)  # fewer on either side: skipped (too noisy to gate on)
    # "lift": compare metric / popularity baseline's metric on the same holdout. Each day's holdout is a different
    # test set (absolute values move +-20% day to day on small data); the ratio cancels how hard the day was.
    compare: Literal["lift", "absolute"] = "lift"


class OverlapCheckConfig(_Check):
    k: int = Field(10, ge=1, le=1000)
    sample_users: int = Field(500, ge=1)
    min_mean_overlap: float = Field(0.2, ge=0, le=1)  # mean |new top-k & previous top-k| / k
    min_users: int = Field(20, ge=1)  # fewer returning users: skipped


class ScoreShiftCheckConfig(_Check):
    severity: Severity = "warn"
    max_ks: float = Field(0.5, gt=0, le=1)  # two-sample KS statistic of top-k scores, new vs previous publish


class ModelGateConfig(_Strict):
    metric: MetricDropCheckConfig = Field(default_factory=MetricDropCheckConfig)
    overlap: OverlapCheckConfig = Field(default_factory=OverlapCheckConfig)
    score_shift: ScoreShiftCheckConfig = Field(default_factory=ScoreShiftCheckConfig)


class StaticBound(_Strict):
    min: float | None = None
    max: float | None = None


class ForecastConfig(_Strict):
    """The forecasting detector (batch/checks/forecast.py): trend + weekly seasonality, prediction interval."""

    # "step.metric" series judged by the forecast instead of the weekday/rolling baseline (with enough history)
    metrics: list[str] = Field(default_factory=list)
    min_history: int = Field(
        28, ge=14
    )  # previous days needed (4 weeks: a weekly season needs several cycles)
    window: int = Field(112, ge=28, le=3660)  # previous days the model is fit on
    interval: float = Field(0.9999, gt=0.5, lt=1)  # coverage of the prediction interval (the expected band)


class AnomalyConfig(_Strict):
    enabled: bool = True
    # the metric store table: dataset.table in BigQuery (Terraform's reco_metrics.run_metrics), `table` in DuckDB
    table: TableName = "reco_metrics.run_metrics"
    metrics: list[str] = Field(
        default_factory=lambda: [
            "aggregate.events_session_day",
            "aggregate.users",
            "aggregate.items",
            "aggregate.invalid_ratio",
            "train.ndcg@10",
            "export.rows",
            "export.user_coverage",
            "export.catalog_coverage",
        ]
    )
    static: dict[str, StaticBound] = Field(default_factory=dict)  # "step.metric" -> bounds
    window: int = Field(28, ge=3)  # previous runs the rolling median/MAD looks at
    weekday_weeks: int = Field(4, ge=2)  # same-weekday runs the weekday baseline looks at
    min_history: int = Field(7, ge=2)
    threshold: float = Field(4.0, gt=0)  # robust z: |value - median| / (1.4826 MAD)
    min_relative_deviation: float = Field(
        0.05, ge=0
    )  # ignore deviations smaller than this share of the median
    severity: Severity = "warn"  # "fail" makes an anomaly fail the export step (after publishing nothing)
    forecast: ForecastConfig = Field(default_factory=ForecastConfig)


class IndexCheckConfig(_Strict):
    # recall@N (N = candidates.n) of the ANN index against exact scoring on a seeded sample of users
    sample_users: int = Field(2000, ge=1)
    min_recall: float = Field(0.95, ge=0, le=1)


class ChecksConfig(_Strict):
    publish: PublishCheckConfig = Field(default_factory=PublishCheckConfig)
    index: IndexCheckConfig = Field(default_factory=IndexCheckConfig)
    data: DataChecksConfig = Field(default_factory=DataChecksConfig)
    model: ModelGateConfig = Field(default_factory=ModelGateConfig)
    anomaly: AnomalyConfig = Field(default_factory=AnomalyConfig)
    report: bool = True  # write the HTML run report at the end of export (and when a gate stops the batch)


class SearchParam(_Strict):
    """One dimension of the tuning search space: a number range (int/float, optionally log-scaled) or a choice."""

    type: Literal["int", "float", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _shape(self) -> SearchParam:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty 'choices' list")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"an {self.type} parameter needs 'low' and 'high'")
        if self.low > self.high:
            raise ValueError(f"low ({self.low:g}) is above high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError("a log-scaled range needs low > 0")
        return self


class TuningPrunerConfig(_Strict):
    # median pruning on the per-iteration metric: a trial below the median of earlier trials at the same
    # iteration stops there (none during the first n_startup_trials, nor before n_warmup_steps iterations)
    enabled: bool = True
    n_startup_trials: int = Field(5, ge=0)
    n_warmup_steps: int = Field(2, ge=0)
    report_every: int = Field(1, ge=1)  # score the holdout every this many iterations


class TuningConfig(_Strict):
    """`reco tune` (docs/tuning.md): what is searched, how long, and when a tuned set replaces the config's."""

    metric: str = "ndcg@10"  # maximised; one of the train step's offline metrics at evaluation.ks
    trials: int = Field(40, ge=1, le=10_000)
    workers: int = Field(2, ge=1, le=256)
    timeout_s: int | None = Field(None, ge=1)
    seed: int = 7  # the sampler's; worker i samples with seed + i
    # relative gain over the production parameters (scored again on the same split and seed) needed to promote
    min_gain: float = Field(0.02, ge=0)
    # model type -> parameter -> range. Unset: the defaults of batch/tuning/space.py for model.type.
    search_space: dict[str, dict[str, SearchParam]] | None = None
    pruner: TuningPrunerConfig = Field(default_factory=TuningPrunerConfig)
    # Optuna storage URL; null: a journal file under $RECO_HOME/tuning/ (parallel local workers). Overridden by
    # $RECO_TUNING_STORAGE (set by the cloud worker Job: PostgreSQL through the Cloud SQL Auth Proxy).
    storage: str | None = None
    heartbeat_interval_s: int = Field(10, ge=1)
    grace_period_s: int = Field(30, ge=2)


class DriftGuardConfig(_Strict):
    """When a warm-started model drifts, the train step refits fully in the same run (before any publish)."""

    enabled: bool = True
    # the offline metric may not drop more than the model gate's checks.model.metric.max_relative_drop below the
    # parent's (same metric and comparison as the gate); and the mean overlap@k of the warm-started model's top-k
    # with the parent's over a seeded sample of returning users may not fall below this floor
    min_overlap: float = Field(0.3, ge=0, le=1)
    k: int = Field(10, ge=1, le=1000)
    sample_users: int = Field(500, ge=1)
    min_users: int = Field(20, ge=1)  # fewer returning users: the overlap is not judged


class IncrementalConfig(_Strict):
    """Incremental daily runs (docs/incremental.md): daily partial aggregates, warm start, carried-over lists."""

    enabled: bool = False
    # passes from the parent's factors over the window minus the holdout (the evaluated model), then more over the
    # whole window (the served one). Few: every pass adds to the chain's total and ALS past ~18 passes loses
    # next-day nDCG@10 (1M: 0.1015 after 15, 0.0990 after 39), so a week of 3 + 3 fell 2-3 % below the full run.
    # Two served passes: items new on the holdout day have no data in the evaluated passes; one pass over the whole
    # window solves them only after the users were solved against their blank factors (1M, a day with 571 new
    # items: 0.957x the full run with 1 + 1, 0.986x with 1 + 2; 10M, day 1: 0.974x, 0.996x) (docs/incremental.md)
    iterations: int = Field(1, ge=1, le=1000)
    refit_iterations: int = Field(2, ge=1, le=1000)
    full_every_days: int = Field(7, ge=1, le=3650)  # a full fit at least this often (days since the last one)
    # users an incremental day's evaluation scores (a seeded sample, within evaluation.max_users; null: that cap).
    # Its figures serve the model gate and the drift guard, whose tolerance (20 % by default) is ~10x the standard
    # error of nDCG@10 over 20,000 users (~0.002 on nDCG ~0.1); full days keep evaluation.max_users
    evaluation_max_users: int | None = Field(20_000, ge=1)
    # users without new events since the parent run (docs/incremental.md, section 4):
    # - rescore: against every item, like everyone else;
    # - refresh: today's model ranks only their parent list plus the day's `refresh_items` hottest items (every
    #   item new to the model included): (n + refresh_items) scores a user instead of n_items;
    # - carry: they keep the parent publish's list as it was. bench/incremental.py measured carried lists 7-16 %
    #   below a full run's next-day nDCG@10 for those users (a list made yesterday misses the day's new items and
    #   everyone's last day of data)
    quiet_users: Literal["rescore", "refresh", "carry"] = "refresh"
    refresh_items: int = Field(2000, ge=0, le=1_000_000)
    drift: DriftGuardConfig = Field(default_factory=DriftGuardConfig)
    # BigQuery: also load each computed daily partial into this day-partitioned table (column `day`)
    partials_table: TableName | None = None


class PipelineConfig(_Strict):
    name: str
    description: str = ""
    owner: str = ""
    source: SourceConfig
    aggregate: AggregateConfig = Field(default_factory=AggregateConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    candidates: CandidatesConfig = Field(default_factory=CandidatesConfig)
    export: ExportConfig
    checks: ChecksConfig = Field(default_factory=ChecksConfig)
    incremental: IncrementalConfig = Field(default_factory=IncrementalConfig)
    # step -> resource class (the Job template variant, k8s/base/batch), e.g. {train: gpu}; steps not named keep
    # the class their declaration gives
    resources: dict[str, Annotated[str, AfterValidator(_resource_class)]] = Field(default_factory=dict)
    tuning: TuningConfig = Field(default_factory=TuningConfig)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(
                "pipeline name must be lower case letters, digits and _ (it names tables and Jobs)"
            )
        return v

    @model_validator(mode="after")
    def _holdout_inside_window(self) -> PipelineConfig:
        if self.evaluation.enabled and self.evaluation.holdout_days >= self.aggregate.lookback_days:
            raise ValueError(
                f"evaluation.holdout_days ({self.evaluation.holdout_days}) must be shorter than "
                f"aggregate.lookback_days ({self.aggregate.lookback_days}): the model needs days to train on"
            )
        return self

    def fingerprint(self) -> str:
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


class WarehouseConfig(_Strict):
    backend: Literal["duckdb", "bigquery"] = "duckdb"
    path: str | None = None  # duckdb file; default $RECO_HOME/warehouse.duckdb
    project: str | None = None  # bigquery
    dataset: str | None = None  # bigquery dataset for unqualified source tables
    location: str | None = None

    @model_validator(mode="after")
    def _bq(self) -> WarehouseConfig:
        if self.backend == "bigquery" and not (self.project and self.dataset):
            raise ValueError("bigquery warehouse needs project and dataset")
        return self


class SlackConfig(_Strict):
    channel: str | None = None
    # The webhook URL is a secret: it comes from this environment variable (or Digdag's ${secret:slack.webhook_url}
    # exported into it), never from a file in the repo.
    webhook_env: str = "SLACK_WEBHOOK_URL"
    report_base_url: str | None = None


class DigdagConfig(_Strict):
    endpoint: str | None = None
    project: str = "reco"
    iap_audience: str | None = None  # client id of the IAP in front of the server: ID-token auth


class KubernetesConfig(_Strict):
    overlay: str = "k8s/overlays/dev"
    namespace: str = "reco-batch"
    context: str | None = None
    unschedulable_timeout_s: int = Field(900, ge=1)


class DashboardConfig(_Strict):
    """`reco dashboard` (batch/dashboard): who may read it and what counts as late."""

    # Audience of the IAP JWT (x-goog-iap-jwt-assertion): /projects/NUMBER/global/backendServices/ID of the
    # dashboard's backend service. When set, every request except health checks must carry a valid assertion.
    iap_audience: str | None = None
    iap_certs_url: str = "https://www.gstatic.com/iap/verify/public_key"
    sla_hours: float = Field(36.0, gt=0)  # a pipeline whose latest publish is older than this is late
    cache_s: float = Field(60.0, ge=0)  # how long the metric history of a pipeline is reused between pages

    @field_validator("iap_audience")
    @classmethod
    def _unset_when_empty(cls, v: str | None) -> str | None:
        return v or None  # ${DASHBOARD_IAP_AUDIENCE:-} expands to "" where the deployment has not set it


class EnvironmentConfig(_Strict):
    name: str
    runner: Literal["local", "gke"] = "local"
    artifact_root: str | None = None  # fsspec URL; default $RECO_HOME/artifacts
    warehouse: WarehouseConfig = Field(default_factory=WarehouseConfig)
    slack: SlackConfig = Field(default_factory=SlackConfig)
    digdag: DigdagConfig = Field(default_factory=DigdagConfig)
    kubernetes: KubernetesConfig = Field(default_factory=KubernetesConfig)
    dashboard: DashboardConfig = Field(default_factory=DashboardConfig)
    schedule_enabled: bool = False

    def resolved_artifact_root(self) -> str:
        return self.artifact_root or str(reco_home() / "artifacts")

    def resolved_duckdb_path(self) -> str:
        return self.warehouse.path or str(reco_home() / "warehouse.duckdb")


# ---------------------------------------------------------------------------------------------------------------
# Loading


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text()
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: file not found") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{_yaml_where(path, e)}: not valid YAML: {_yaml_problem(e)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def _yaml_where(path: Path, e: yaml.YAMLError) -> str:
    """``file:line:column`` (1-based, as editors count) of a YAML error, or the file alone."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    return f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)


def _yaml_problem(e: yaml.YAMLError) -> str:
    problem = getattr(e, "problem", None)
    context = getattr(e, "context", None)
    if problem:
        return f"{problem} ({context})" if context else str(problem)
    return str(e).splitlines()[0]


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _format_validation(source: str, err: ValidationError, overrides: dict[str, str] | None = None) -> str:
    lines = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "(top level)"
        blamed = _blamed_overrides(field, overrides or {})
        where = " ".join(f"--set {k}={v}" for k, v in blamed.items()) if blamed else source
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: field '{field}': {msg}")
    return "; ".join(lines)


def _blamed_overrides(field: str, overrides: dict[str, str]) -> dict[str, str]:
    """The --set options an error at ``field`` can come from: the field itself, or a value inside it (a model
    validator reports ``model`` for ``--set model.params.factors=abc``)."""
    if field in overrides:
        return {field: overrides[field]}
    return {k: v for k, v in overrides.items() if k.startswith(field + ".")}


def parse_set_options(items: list[str] | None) -> dict[str, str]:
    """``["model.factors=64"]`` -> ``{"model.factors": "64"}``; errors name the option."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$", key):
            raise ConfigError(f"--set {item!r}: expected key.path=value, e.g. --set model.params.factors=64")
        root = key.split(".")[0]
        if root in _NOT_SETTABLE:
            raise ConfigError(f"--set {item}: {_NOT_SETTABLE[root]}")
        out[key] = value
    return out


# Keys --set may not change, and why: every command finds a pipeline's outputs by the name it was given.
_NOT_SETTABLE = {
    "name": "the pipeline name cannot be overridden: it names the artifact paths, tables and Jobs that every "
    "later command reads (use --pipeline NAME, or add config/pipelines/NAME.yaml)",
    "envs": "per-environment sections cannot be overridden: use --env and --set the value itself",
}

# Short forms people type: `--set model.factors=64` means model.params.factors.
_SET_ALIASES = {"model": {"type", "params", "seed"}}


def _set_path(data: dict, dotted: str, raw: str) -> None:
    parts = dotted.split(".")
    if parts[0] == "model" and len(parts) == 2 and parts[1] not in _SET_ALIASES["model"]:
        parts = ["model", "params", parts[1]]
    node = data
    for p in parts[:-1]:
        child = node.get(p)
        if child is None:
            child = node[p] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: '{p}' is a value, not a section")
        node = child
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {dotted}={raw}: cannot parse value: {e}") from e
    node[parts[-1]] = value


def _canonical_override_keys(overrides: dict[str, str]) -> dict[str, str]:
    out = {}
    for key, value in overrides.items():
        parts = key.split(".")
        if parts[0] == "model" and len(parts) == 2 and parts[1] not in _SET_ALIASES["model"]:
            key = f"model.params.{parts[1]}"
        out[key] = value
    return out


def pipeline_path(name: str) -> Path:
    return config_dir() / "pipelines" / f"{name}.yaml"


def list_pipelines() -> list[str]:
    return sorted(p.stem for p in (config_dir() / "pipelines").glob("*.yaml"))


def load_pipeline(name: str, env: str = "local", overrides: dict[str, str] | None = None) -> PipelineConfig:
    """Base values, then ``envs.<env>``, then ``--set`` overrides; validated with errors naming file and field."""
    if env not in ENVIRONMENTS:
        raise ConfigError(f"unknown environment {env!r}; known: {', '.join(ENVIRONMENTS)}")
    path = pipeline_path(name)
    if not path.exists():
        known = ", ".join(list_pipelines()) or "none"
        raise ConfigError(f"{path}: no pipeline named {name!r} (known pipelines: {known})")
    raw = _read_yaml(path)
    envs = raw.pop("envs", {}) or {}
    if not isinstance(envs, dict):
        raise ConfigError(f"{path}: field 'envs' must be a mapping of environment name to overrides")
    for env_name in envs:
        if env_name not in ENVIRONMENTS:
            raise ConfigError(
                f"{path}: field 'envs.{env_name}': unknown environment; known: {', '.join(ENVIRONMENTS)}"
            )
    merged = deep_merge(raw, envs.get(env) or {})
    if merged.get("name", name) != name:
        raise ConfigError(f"{path}: field 'name' is {merged.get('name')!r} but the file is named {name!r}")
    merged.setdefault("name", name)
    canonical = _canonical_override_keys(overrides or {})
    for key, value in (overrides or {}).items():
        _set_path(merged, key, value)
    try:
        return PipelineConfig.model_validate(merged)
    except ValidationError as e:
        raise ConfigError(_format_validation(f"{path} (env {env})", e, canonical)) from None


_ENV_VAR = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::-([^}]*))?\}")


def _expand_env_vars(value: Any, field: str, source: str, placeholder: bool = False) -> Any:
    """``${VAR}`` / ``${VAR:-default}`` in environment config: project ids come from the deployment, not the repo."""
    if isinstance(value, dict):
        return {
            k: _expand_env_vars(v, f"{field}.{k}" if field else k, source, placeholder)
            for k, v in value.items()
        }
    if isinstance(value, str):

        def repl(m: re.Match) -> str:
            var, default = m.group(1), m.group(2)
            got = os.environ.get(var)
            if got:
                return got
            if default is not None:
                return default
            if placeholder:
                return f"unset-{var.lower().replace('_', '-')}"
            raise ConfigError(f"{source}: field '{field}' needs environment variable {var}, which is not set")

        return _ENV_VAR.sub(repl, value)
    return value


def load_environment(
    env: str, *, unset_variables: Literal["error", "placeholder"] = "error"
) -> EnvironmentConfig:
    """One environment of environments.yaml. ``unset_variables="placeholder"`` (checks on a laptop) fills a
    ``${VAR}`` the shell does not set instead of failing."""
    path = config_dir() / "environments.yaml"
    raw = _read_yaml(path)
    envs = raw.get("environments") or {}
    if env not in ENVIRONMENTS:
        raise ConfigError(f"unknown environment {env!r}; known: {', '.join(ENVIRONMENTS)}")
    if env not in envs:
        raise ConfigError(f"{path}: field 'environments.{env}' is missing")
    data = _expand_env_vars(
        dict(envs[env] or {}), f"environments.{env}", str(path), unset_variables == "placeholder"
    )
    data["name"] = env
    try:
        return EnvironmentConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(
            _format_validation(f"{path}", e).replace("field '", f"field 'environments.{env}.")
        ) from None


# Session dates a batch can mean: events carry Unix timestamps (from 1970), and a window reaches a day past its
# date, so 9999-12-31 (a "forever" sentinel) would overflow; anything past 2999 is a typo.
MIN_SESSION_DATE = date(1970, 1, 1)
MAX_SESSION_DATE = date(2999, 12, 31)


def parse_date(value: str, what: str = "--date") -> date:
    """A session date; the error names the option, the value and what is wrong with it (exit 65)."""
    text = (value or "").strip() if isinstance(value, str) else value
    if not isinstance(text, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise ConfigError(f"{what} {value!r}: expected a date as YYYY-MM-DD, e.g. 2026-11-21") from None
    try:
        d = date.fromisoformat(text)
    except ValueError as e:  # 2026-02-30: "day is out of range for month"
        raise ConfigError(f"{what} {value!r}: not a calendar date ({e})") from None
    if not MIN_SESSION_DATE <= d <= MAX_SESSION_DATE:
        raise ConfigError(
            f"{what} {value!r}: outside the supported range {MIN_SESSION_DATE}..{MAX_SESSION_DATE}"
        )
    return d
