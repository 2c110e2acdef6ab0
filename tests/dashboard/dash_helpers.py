"""Helpers of the dashboard tests: the dates of the fixture data and a dashboard served by uvicorn in a thread."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import requests

SESSION = date(2026, 11, 21)
FAILED_DAY = SESSION - timedelta(days=1)
PLANTED = SESSION - timedelta(days=20)  # a 3x spike of aggregate.events_session_day
HISTORY_DAYS = 150


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the dashboard did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


def seasonal_value(d: date, level: float) -> float:
    weekly = 0.7 if d.weekday() >= 5 else 1.0
    return level * weekly * (1 + 0.02 * math.sin(d.toordinal() * 1.3))


def get(served, path, **kw) -> requests.Response:
    return requests.get(served.url + path, timeout=30, **kw)


def chart_json(html: str, chart_id: str) -> dict:
    """The data a page's chart is drawn from (the JSON script next to it)."""
    return json.loads(
        html.split(f'<script type="application/json" id="{chart_id}">')[1].split("</script>")[0]
    )


def pinned_env(home: Path):
    """The local environment with its DuckDB file and artifact root fixed to ``home`` (no RECO_HOME needed)."""
    from batch.config import load_environment

    env = load_environment("local")
    return env.model_copy(
        update={
            "artifact_root": str(home / "artifacts"),
            "warehouse": env.warehouse.model_copy(update={"path": str(home / "warehouse.duckdb")}),
        }
    )
