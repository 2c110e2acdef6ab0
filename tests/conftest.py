"""Shared fixtures: an isolated RECO_HOME per test, small generated data, the MovieLens sample when present."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import pytest

SESSION = date(2026, 11, 21)
MOVIELENS = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-latest-small"


@pytest.fixture
def reco_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "var"
    monkeypatch.setenv("RECO_HOME", str(home))
    monkeypatch.setenv("RECO_LOG_FORMAT", "text")
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)
    return home


@pytest.fixture
def small_data(reco_home):
    """Synthetic demo traffic small enough for a test: ~600 users, 300 items, 35 days up to SESSION."""
    from batch.config import load_environment, load_pipeline
    from batch.data import SyntheticSpec, generate, write_source
    from batch.warehouse import open_warehouse

    pipeline = load_pipeline("demo")
    events, items = generate(
        SyntheticSpec(users=600, items=300, days=35, end_date=SESSION, seed=3, events_per_user=25)
    )
    with open_warehouse(load_environment("local")) as wh:
        write_source(
            wh, pipeline.source.events_table, pipeline.source.items_table, events, items, append=False
        )
    return events, items


@pytest.fixture
def make_ctx(reco_home):
    """StepContext factory for the demo pipeline with small model settings."""
    from batch.config import load_environment, load_pipeline
    from batch.context import StepContext

    def factory(session_date=SESSION, overrides=None, shard_index=0, shard_count=None, **kw):
        base = {"model.params.iterations": "3", "model.params.factors": "16"}
        base.update(overrides or {})
        pipeline = load_pipeline("demo", "local", base)
        return StepContext(
            pipeline=pipeline,
            env=load_environment("local"),
            session_date=session_date,
            shard_index=shard_index,
            shard_count=shard_count or pipeline.candidates.shard_count,
            overrides=base,
            show_progress=False,
            **kw,
        )

    return factory


@pytest.fixture
def movielens_dir() -> Path:
    if not (MOVIELENS / "ratings.csv").exists():
        pytest.skip("../shared/data/ml-latest-small is not present")
    return MOVIELENS


@pytest.fixture
def run_pipeline(make_ctx):
    """Every step for one date, shards in turn; returns the export step's result."""
    from batch.execute import run_step
    from batch.graph import GRAPH
    from batch.storage import new_run_id

    def run(session_date=SESSION, overrides=None):
        """Returns the results of every step by name (a sharded step: its last shard's)."""
        run_id = new_run_id()
        results = {}
        for step in GRAPH.steps():
            ctx = make_ctx(session_date, overrides, run_id=run_id)
            if not step.is_enabled(ctx.pipeline):
                continue
            shards = range(ctx.shard_count) if step.sharded else [0]
            for i in shards:
                results[step.name] = run_step(
                    step, make_ctx(session_date, overrides, shard_index=i, run_id=run_id)
                )
        return results

    return run


@pytest.fixture
def fast_retries(monkeypatch):
    """A Google client's retry and polling sleeps (google.api_core.retry), shortened to 10 ms: same behaviour, and
    the suite stays fast. Only that module's view of ``time`` changes; ``time.sleep`` elsewhere is untouched."""
    from google.api_core.retry import retry_unary

    sleeps: list[float] = []

    class _Time:
        def __getattr__(self, name):
            return getattr(time, name)

        @staticmethod
        def sleep(seconds: float) -> None:
            sleeps.append(seconds)
            time.sleep(min(seconds, 0.01))

    monkeypatch.setattr(retry_unary, "time", _Time())
    return sleeps
