"""Fixtures for the quality gates: captured Slack alerts and helpers that inject faults into real runs."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc
import pytest


@pytest.fixture
def alerts(monkeypatch):
    """Every quality alert a run sends (instead of Slack)."""
    sent: list[dict] = []
    from batch import execute

    def capture(ctx, message):
        sent.append(message)
        return True

    monkeypatch.setattr(execute, "deliver", capture)
    return sent


def alert_text(message: dict) -> str:
    from batch.alerts.slack import as_text

    return as_text(message)


def day_bounds(d, tz="Asia/Tokyo"):
    z = ZoneInfo(tz)
    start = datetime.combine(d, time.min, tzinfo=z).astimezone(UTC)
    return start, start + timedelta(days=1)


@pytest.fixture
def rewrite_source(reco_home):
    """Replace the demo source tables with a filtered copy of the events."""
    from batch.config import load_environment, load_pipeline
    from batch.data import write_source
    from batch.warehouse import open_warehouse

    def rewrite(events: pa.Table, items: pa.Table) -> None:
        pipeline = load_pipeline("demo")
        with open_warehouse(load_environment("local")) as wh:
            write_source(
                wh, pipeline.source.events_table, pipeline.source.items_table, events, items, append=False
            )

    return rewrite


def drop_share_of_day(events: pa.Table, d, share: float, seed: int = 0) -> pa.Table:
    """Remove ``share`` of the events of one session day (pipeline timezone)."""
    import numpy as np

    start, end = day_bounds(d)
    ts = events.column("ts")
    on_day = pc.and_(pc.greater_equal(ts, pa.scalar(start, ts.type)), pc.less(ts, pa.scalar(end, ts.type)))
    on_day = np.asarray(on_day.to_numpy(zero_copy_only=False), dtype=bool) & ~np.asarray(
        pc.is_null(ts).to_numpy(zero_copy_only=False), dtype=bool
    )
    drop = on_day & (np.random.default_rng(seed).random(len(on_day)) < share)
    return events.filter(pa.array(~drop))


def cut_after(events: pa.Table, d) -> pa.Table:
    """Only events up to the end of session day ``d``: a source that stopped updating then."""
    _, end = day_bounds(d)
    ts = events.column("ts")
    keep = pc.or_kleene(pc.less(ts, pa.scalar(end, ts.type)), pc.is_null(ts))
    return events.filter(keep)


class _Faults:
    drop_share_of_day = staticmethod(drop_share_of_day)
    cut_after = staticmethod(cut_after)
    alert_text = staticmethod(alert_text)


@pytest.fixture
def faults():
    return _Faults
