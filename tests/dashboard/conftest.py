"""A real demo run, a failed gate and months of metric history in one RECO_HOME; the dashboard served over
loopback by uvicorn in a thread, as `reco dashboard` serves it."""

from __future__ import annotations

import importlib.util
import math
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from dash_helpers import (  # noqa: E402
    FAILED_DAY,
    HISTORY_DAYS,
    PLANTED,
    SESSION,
    Served,
    pinned_env,
    seasonal_value,
)


def _quality_faults():
    """tests/quality's fault injection (its conftest is not importable by name under importlib mode)."""
    path = Path(__file__).parents[1] / "quality" / "conftest.py"
    spec = importlib.util.spec_from_file_location("quality_faults", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_all(ctx_factory, session_date):
    from batch.execute import run_step
    from batch.graph import GRAPH
    from batch.storage import new_run_id

    run_id = new_run_id()
    for step in GRAPH.enabled_steps(ctx_factory(session_date).pipeline):
        if step.sharded:
            for i in range(ctx_factory(session_date).shard_count):
                run_step(step, ctx_factory(session_date, shard_index=i, run_id=run_id))
        else:
            run_step(step, ctx_factory(session_date, run_id=run_id))


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory) -> Path:
    """RECO_HOME after: a passing run of SESSION; an aggregate of FAILED_DAY stopped by the volume check; metric
    history for the HISTORY_DAYS before (the store's own writer) with a planted spike on PLANTED."""
    from batch import execute
    from batch import metrics_store as ms
    from batch.config import load_environment, load_pipeline
    from batch.context import StepContext
    from batch.data import SyntheticSpec, generate, write_source
    from batch.errors import CheckFailedError
    from batch.execute import run_step
    from batch.warehouse import open_warehouse

    home = tmp_path_factory.mktemp("dash") / "var"
    mp = pytest.MonkeyPatch()
    mp.setenv("RECO_HOME", str(home))
    mp.setenv("RECO_LOG_FORMAT", "text")
    mp.delenv("SLACK_WEBHOOK_URL", raising=False)
    mp.setattr(execute, "deliver", lambda ctx, message: True)
    env = load_environment("local")
    pipeline = load_pipeline("demo")
    events, items = generate(
        SyntheticSpec(users=400, items=200, days=35, end_date=SESSION, seed=3, events_per_user=25)
    )
    with open_warehouse(env) as wh:
        write_source(
            wh, pipeline.source.events_table, pipeline.source.items_table, events, items, append=False
        )

    overrides = {"model.params.iterations": "3", "model.params.factors": "16"}

    def ctx(session_date, shard_index=0, run_id=None):
        p = load_pipeline("demo", "local", overrides)
        kw = {"run_id": run_id} if run_id else {}
        return StepContext(
            pipeline=p,
            env=env,
            session_date=session_date,
            shard_index=shard_index,
            shard_count=p.candidates.shard_count,
            overrides=overrides,
            show_progress=False,
            **kw,
        )

    _run_all(ctx, SESSION)
    # FAILED_DAY: 80% of its events gone -> the volume check stops the aggregate step
    drop_share_of_day = _quality_faults().drop_share_of_day

    with open_warehouse(env) as wh:
        write_source(
            wh,
            pipeline.source.events_table,
            pipeline.source.items_table,
            drop_share_of_day(events, FAILED_DAY, 0.8),
            items,
            append=False,
        )
    with pytest.raises(CheckFailedError):
        run_step("aggregate", ctx(FAILED_DAY))
    # months of history before, through the metric store's writer; one planted spike
    table = pipeline.checks.anomaly.table
    level = ms.history(env, table, "demo", since=SESSION, until=SESSION)
    users = float(level[(level["metric"] == "users")]["value"].iloc[0])
    import pyarrow as pa

    recorded_at = datetime.now(UTC)
    parts = []
    for i in range(HISTORY_DAYS, 1, -1):
        d = SESSION - timedelta(days=i)
        v = seasonal_value(d, 2000.0) * (3.0 if d == PLANTED else 1.0)
        aggregate_rows = [
            ("events_session_day", None, v),
            ("users", None, users * (1 + 0.01 * math.sin(i))),
            ("dropped", {"reason": "duplicate"}, 10 + i % 5),
            ("dropped", {"reason": "null_id"}, 3 + i % 3),
        ]
        parts.append(ms.rows_table("demo", d, "aggregate", aggregate_rows, recorded_at))
        export_rows = [("user_coverage", None, 0.99), ("catalog_coverage", None, 0.5)]
        parts.append(ms.rows_table("demo", d, "export", export_rows, recorded_at))
    with ms.open_store(env) as wh:  # one append (what ms.record does per day and step)
        wh.write_table(table, pa.concat_tables(parts), mode="append")
    mp.undo()  # built once per session; the apps below read it through pinned_env
    return home


@pytest.fixture(scope="session")
def served(demo_home):
    from batch.dashboard.app import create_app

    with Served(create_app(pinned_env(demo_home))) as s:
        yield s
