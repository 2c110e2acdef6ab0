"""Serving an in-process fake of a Google JSON API over real HTTP on 127.0.0.1 (the BigQuery and Cloud Storage
fakes): the transport only; what the API answers is each fake's ``handle``."""

from __future__ import annotations

import email.parser
import email.policy
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

# An answer of ``handle``: close the connection without a reply (the request was done; its answer got lost).
DROP = object()
JSON = "application/json; charset=UTF-8"


@dataclass
class Received:
    """One request a fake saw, for tests to assert on (path without the query; query parsed)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class BadUpload(ValueError):
    """A request body that breaks Google's upload protocol; each fake answers it in its API's error format."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def json_object(body: bytes) -> dict:
    """A request's JSON resource (an object), or BadUpload(parseError)."""
    try:
        out = json.loads(body)
    except ValueError as e:
        raise BadUpload(f"Invalid JSON payload received: {e}", "parseError") from None
    if not isinstance(out, dict):
        raise BadUpload("Invalid JSON payload received", "parseError")
    return out


def split_multipart(content_type: str, body: bytes) -> tuple[dict, bytes, str]:
    """A multipart/related upload (the same protocol for BigQuery load jobs and Cloud Storage objects): the
    resource (a JSON object), then the media and its own Content-Type."""
    if not content_type.startswith("multipart/related"):
        raise BadUpload("A multipart upload needs Content-Type multipart/related", "invalid")
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    parts = list(msg.iter_parts())
    if len(parts) != 2:
        raise BadUpload("A multipart upload has exactly two parts: metadata and media", "invalid")
    return (
        json_object(parts[0].get_payload(decode=True)),
        parts[1].get_payload(decode=True),
        parts[1].get_content_type(),
    )


class Fake(Protocol):
    def handle(self, method: str, url: str, headers: dict[str, str], body: bytes) -> Any:
        """(status, extra headers, payload) or DROP."""


class ApiServer:
    """``fake.handle`` behind a threading HTTP server; ``start()`` returns the base URL, ``stop()`` ends it."""

    def __init__(self, fake: Fake, *, max_body: int) -> None:
        self.fake, self.max_body = fake, max_body
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.fake, self.max_body))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None


def _handler(fake: Fake, max_body: int) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 5  # an idle keep-alive connection is dropped, so no handler thread outlives a test for long

        def log_message(self, *args) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > max_body or self.headers.get("Transfer-Encoding"):
                self.send_error(413 if length > max_body else 411)
                return
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            answer = fake.handle(self.command, self.path, headers, body)
            if answer is DROP:
                self.close_connection = True
                return
            status, extra, payload = answer
            self.send_response(status)
            for k, v in ({"Content-Type": JSON, **extra} if payload else extra).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    return Handler
