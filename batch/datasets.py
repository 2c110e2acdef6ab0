"""Typed readers of the datasets steps exchange: a step reads its inputs here, never through another step.

Each reader wraps a committed partition (batch.storage.Committed); errors name the path and the step to rerun,
which is the dataset's producer in the graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp

import models
from batch.context import StepContext
from batch.errors import ArtifactError, CorruptArtifactError
from batch.graph import GRAPH
from batch.storage import Committed
from models.ann import AnnIndex, load_index

# The datasets of the standard graph (a step may write others: the graph only needs the names to match).
INTERACTIONS = "interactions"
MODEL = "model"
CANDIDATES = "candidates"
RELATED = "related"
INDEX = "index"
INDEX_FILE = "index.npz"  # models.ann's own format: the serialised faiss index, the item map, the parameters
EXPORT = "export"
# Written by aggregate beside its output when incremental runs are on: one partition per *event day*
# (dt=<day>), reused by every later session date whose window holds that day (batch/partials.py).
INTERACTIONS_DAILY = "interactions_daily"


def producer_name(dataset: str) -> str:
    spec = GRAPH.producer(dataset)
    return spec.name if spec else dataset


def rerun_command(ctx: StepContext, step: str, shard: tuple[int, int] | None = None) -> str:
    cmd = f"reco step {step} --pipeline {ctx.name} --date {ctx.session_date} --env {ctx.env.name}"
    if shard is not None:
        cmd += f" --shard-index {shard[0]} --shard-count {shard[1]}"
    return cmd


def committed(ctx: StepContext, dataset: str, shard: tuple[int, int] | None = None) -> Committed:
    """The committed partition of a dataset for the context's pipeline and date."""
    step = producer_name(dataset)
    return ctx.store.committed(
        ctx.name,
        dataset,
        ctx.session_date,
        step=step,
        shard=shard,
        rerun=rerun_command(ctx, step, shard) if shard is not None else None,
    )


def committed_or_none(
    ctx: StepContext, dataset: str, shard: tuple[int, int] | None = None
) -> Committed | None:
    try:
        return committed(ctx, dataset, shard)
    except ArtifactError:
        return None


def partial_or_none(ctx: StepContext, day) -> Committed | None:
    """The committed daily partial of an event day, or None (missing or unreadable: it is recomputed)."""
    try:
        return ctx.store.committed(ctx.name, INTERACTIONS_DAILY, day, step="aggregate")
    except ArtifactError:
        return None


def to_csr(inter: pd.DataFrame, column: str, n_users: int, n_items: int) -> sp.csr_matrix:
    """Rows with a positive ``column`` as a users x items matrix (duplicates summed, indices sorted)."""
    rows = inter[inter[column] > 0]
    m = sp.csr_matrix(
        (rows[column].to_numpy(np.float32), (rows["user_idx"].to_numpy(), rows["item_idx"].to_numpy())),
        shape=(n_users, n_items),
        dtype=np.float32,
    )
    m.sum_duplicates()
    m.sort_indices()
    return m


@dataclass
class Interactions:
    """The aggregate's output: interactions.parquet (user_idx, item_idx, weight, weight_train, holdout_events,
    sorted by user and item), users.parquet, items.parquet, stats.json."""

    src: Committed

    def frame(self, columns: list[str] | None = None) -> pd.DataFrame:
        return self.src.read_parquet("interactions.parquet", columns=columns).to_pandas()

    def users(self) -> pa.Table:
        return self.src.read_parquet("users.parquet")

    def items(self) -> pa.Table:
        return self.src.read_parquet("items.parquet")

    def open_pairs(self):
        """interactions.parquet as a file, for streaming readers."""
        return self.src.open("interactions.parquet")

    @property
    def stats(self) -> dict:
        return self.src.metadata.get("stats", {})


@dataclass
class Model:
    """The train step's output: model.npz and the id maps its factors are indexed by."""

    src: Committed

    @property
    def version(self) -> str:
        return self.src.metadata.get("model_version", self.src.run_id)

    @property
    def metadata(self) -> dict:
        return self.src.metadata

    def load(self) -> models.Recommender:
        try:
            with self.src.open("model.npz") as f:
                return models.load_model(f)
        except (ValueError, KeyError, OSError, EOFError) as e:
            raise CorruptArtifactError(
                f"cannot load the model ({e})", path=self.src.path("model.npz"), step=self.src.step
            ) from None

    def items(self, columns: list[str] | None = None) -> pd.DataFrame:
        return self.src.read_parquet("items.parquet", columns=columns).to_pandas()

    def users(self, columns: list[str] | None = None) -> pd.DataFrame:
        return self.src.read_parquet("users.parquet", columns=columns).to_pandas()

    def user_count(self) -> int:
        return self.src.read_parquet("users.parquet", columns=["user_idx"]).num_rows

    def open_users(self):
        return self.src.open("users.parquet")

    def promotion_record(self, ctx: StepContext) -> dict:
        """What the promoted-model pointer records when a publish made from this model succeeds."""
        meta = self.src.metadata
        return {
            "dt": ctx.session_date.isoformat(),
            "model_version": self.version,
            "run_dir": self.src.run_dir,
            "metrics": meta.get("metrics", {}),
            "model_type": meta.get("model_type"),
            "params": meta.get("params"),
            "run_id": ctx.run_id,
        }


@dataclass
class Index:
    """The index step's output: the method the candidates step uses (``exact`` or ``ann``, with the reason) and,
    for ``ann``, ``index.npz`` built from one model version."""

    src: Committed

    @property
    def method(self) -> str:
        return self.src.metadata.get("method", "exact")

    @property
    def model_version(self) -> str | None:
        return self.src.metadata.get("model_version")

    def check_made_from(self, ctx: StepContext, model_version: str) -> None:
        """An index built from another model than the committed one must not be searched with its factors."""
        if self.model_version != model_version:
            raise ArtifactError(
                f"the index was built from model {self.model_version}, but the committed model is {model_version}",
                path=self.src.url,
                step=self.src.step,
                rerun=rerun_command(ctx, self.src.step),
            )

    def load(self) -> AnnIndex:
        try:
            with self.src.open(INDEX_FILE) as f:
                return load_index(f)
        except (ValueError, KeyError, OSError, EOFError, RuntimeError) as e:
            raise CorruptArtifactError(
                f"cannot load the ANN index ({e})", path=self.src.path(INDEX_FILE), step=self.src.step
            ) from None


def interactions(ctx: StepContext) -> Interactions:
    return Interactions(committed(ctx, INTERACTIONS))


def model(ctx: StepContext) -> Model:
    return Model(committed(ctx, MODEL))


def index(ctx: StepContext) -> Index:
    return Index(committed(ctx, INDEX))


def shards(ctx: StepContext, dataset: str, model_version: str) -> list[Committed]:
    """Every shard of a sharded dataset, all made from the same model; errors name the shard to rerun."""
    count = ctx.pipeline.candidates.shard_count
    step = producer_name(dataset)
    out = []
    for index in range(count):
        part = committed(ctx, dataset, shard=(index, count))
        made_from = part.metadata.get("model_version")
        if made_from != model_version:
            raise ArtifactError(
                f"shard {index} of {count} was made from model {made_from}, but the committed model is "
                f"{model_version}",
                path=part.url,
                step=step,
                rerun=rerun_command(ctx, step, (index, count)),
            )
        out.append(part)
    return out
