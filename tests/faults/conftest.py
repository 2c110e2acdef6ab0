"""Fixtures of the fault matrix: a Slack webhook receiver that counts messages, a Cloud Storage server, and a
stand-in step process."""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from batch.runners.local import PYTHON_RECO, LocalRunner
from tests.faults.fake_gcs import FakeGCS

GCS_PROJECT = "test-project"
GCS_BUCKET = f"{GCS_PROJECT}-reco-artifacts"  # the bucket environments.yaml names for $GCP_PROJECT


@pytest.fixture
def slack(monkeypatch):
    """A real HTTP incoming-webhook receiver; $SLACK_WEBHOOK_URL points at it. ``.bodies`` holds each message."""
    bodies: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            bodies.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0))))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/services/T0/B0/faultmatrixtoken"
    monkeypatch.setenv("SLACK_WEBHOOK_URL", url)
    server.bodies = bodies
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def gcs(monkeypatch):
    """A Cloud Storage JSON API server (tests/faults/fake_gcs.py) with the bucket GCS_BUCKET; the real client
    reaches it through $STORAGE_EMULATOR_HOST, with anonymous credentials and project GCS_PROJECT."""
    server = FakeGCS().start()
    server.add_bucket(GCS_BUCKET)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.base_url)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", GCS_PROJECT)
    monkeypatch.setenv("GCP_PROJECT", GCS_PROJECT)
    yield server
    server.stop()


# Stands in for the step's container command: counts its runs, exits with the next code of $FAKE_EXITS.
FAKE_STEP = r"""
import os, sys
path = os.environ["FAKE_RUNS"]
n = len(open(path).read().splitlines()) if os.path.exists(path) else 0
open(path, "a").write(" ".join(sys.argv[1:]) + "\n")
codes = [int(c) for c in os.environ["FAKE_EXITS"].split(",")]
code = codes[min(n, len(codes) - 1)]
if code:
    print(f"reco: error: injected failure {code}", file=sys.stderr)
sys.exit(code)
"""


@pytest.fixture
def fake_step(tmp_path, monkeypatch):
    """``fake_step("1,0")``: each run of a submitted step exits with the next code; returns the runs file."""
    runs = tmp_path / "runs.txt"
    real = LocalRunner.command

    def command(self, job):
        return [sys.executable, "-c", FAKE_STEP, *real(self, job)[len(PYTHON_RECO) :]]

    def script(exits: str):
        monkeypatch.setenv("FAKE_RUNS", str(runs))
        monkeypatch.setenv("FAKE_EXITS", exits)
        monkeypatch.setattr(LocalRunner, "command", command)
        return runs

    return script


@pytest.fixture
def write_dig(tmp_path):
    """write_dig("name.dig", text) -> Path, under a fresh project directory (``write_dig.dir``)."""
    project = tmp_path / "project"
    project.mkdir()

    def write(name: str, text: str):
        path = project / name
        path.write_text(text)
        return path

    write.dir = project
    return write
