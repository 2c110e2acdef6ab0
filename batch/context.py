"""The typed run context every step receives: pipeline config, session date, environment, shard.

Locations follow from these parameters alone (like gokart's outputs), so any process that is given the same
context, on a laptop or in a GKE pod, reads and writes the same places.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from batch.config import EnvironmentConfig, PipelineConfig
from batch.errors import ConfigError
from batch.storage import ArtifactStore, new_run_id
from batch.warehouse import open_warehouse


@dataclass(frozen=True)
class Window:
    """The event window of a session date, as UTC instants: [start, end), holdout = [holdout_start, end)."""

    start: datetime
    end: datetime
    holdout_start: datetime

    @classmethod
    def for_session(cls, session_date: date, lookback_days: int, holdout_days: int, timezone: str) -> Window:
        tz = ZoneInfo(timezone)

        def day_start(d: date) -> datetime:
            return datetime.combine(d, time.min, tzinfo=tz).astimezone(UTC)

        return cls(
            start=day_start(session_date - timedelta(days=lookback_days - 1)),
            end=day_start(session_date + timedelta(days=1)),
            holdout_start=day_start(session_date - timedelta(days=holdout_days - 1)),
        )


def shard_of(ids: np.ndarray | pd.Series, shard_count: int) -> np.ndarray:
    """Stable shard of each id: the same on every machine and Python process (no per-process hash seed)."""
    hashed = pd.util.hash_pandas_object(pd.Series(ids, dtype="string"), index=False).to_numpy()
    return (hashed % np.uint64(shard_count)).astype(np.int64)


@dataclass(frozen=True)
class StepContext:
    pipeline: PipelineConfig
    env: EnvironmentConfig
    session_date: date
    shard_index: int = 0
    shard_count: int = 1
    overrides: Mapping[str, str] = field(default_factory=dict)
    run_id: str = field(default_factory=new_run_id)
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    show_progress: bool = True

    def __post_init__(self) -> None:
        if self.shard_count < 1:
            raise ConfigError(f"--shard-count must be >= 1, got {self.shard_count}")
        if not 0 <= self.shard_index < self.shard_count:
            raise ConfigError(f"--shard-index must be in 0..{self.shard_count - 1}, got {self.shard_index}")

    @property
    def name(self) -> str:
        return self.pipeline.name

    @cached_property
    def store(self) -> ArtifactStore:
        return ArtifactStore(self.env.resolved_artifact_root())

    def open_warehouse(self):
        return open_warehouse(self.env)

    @cached_property
    def window(self) -> Window:
        return Window.for_session(
            self.session_date,
            self.pipeline.aggregate.lookback_days,
            self.pipeline.evaluation.holdout_days,
            self.pipeline.source.timezone,
        )

    @property
    def shard(self) -> tuple[int, int]:
        return (self.shard_index, self.shard_count)

    def mine(self, ids: np.ndarray | pd.Series) -> np.ndarray:
        """Mask of the ids this shard owns: N shard processes together cover every id exactly once."""
        return shard_of(ids, self.shard_count) == self.shard_index

    def run_record(self) -> dict:
        """What every step writes into its commit marker: enough to reproduce the run."""
        return {
            "pipeline": self.name,
            "session_date": self.session_date.isoformat(),
            "env": self.env.name,
            "run_id": self.run_id,
            "overrides": dict(self.overrides),
            "config_fingerprint": self.pipeline.fingerprint(),
        }
