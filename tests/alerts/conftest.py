"""An in-process Slack incoming-webhook receiver: scripted answers (429 with Retry-After, 5xx), recorded bodies."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class Receiver:
    def __init__(self):
        self.script: list[tuple[int, dict]] = []  # (status, headers) answered in order, then 200
        self.bodies: list[dict] = []
        self.paths: list[str] = []


@pytest.fixture
def webhook():
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            state.bodies.append(json.loads(raw))
            state.paths.append(self.path)
            status, headers = state.script.pop(0) if state.script else (200, {})
            body = b"ok" if status == 200 else b"rate_limited" if status == 429 else b"oops"
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    # a secret-looking path, as a real webhook has
    state.url = (
        f"http://127.0.0.1:{server.server_address[1]}/services/T0SECRET/B0SECRET/xoxsecretwebhooktoken"
    )
    yield state
    server.shutdown()
    server.server_close()
