"""An in-process HTTP server that speaks the part of the Kubernetes REST API the GKE runner uses.

The real `kubernetes` client talks to it: jobs (get, create, delete, list?watch=true), pods (list), pods/log.
A test scripts what the cluster does with a *timeline*: each watch request of the Job first applies the next
entry (new Job status, new pods) and streams the Job as a MODIFIED event, then ends as if its timeoutSeconds had
passed. Special entries: ``{"watch_error": 410}`` (an ERROR event, resourceVersion too old), ``{"drop": True}``
(the connection closes mid-response), ``{"deleted": True}`` (a DELETED event), ``{"block": seconds}``
(no event for a while).
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

JOBS = re.compile(r"^/apis/batch/v1/namespaces/([^/]+)/jobs(?:/([^/]+))?$")
PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods$")
LOG = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/log$")


def status_obj(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
        "metadata": {},
    }


class FakeKube:
    def __init__(self, max_requests: int = 400):
        self.jobs: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, list[dict[str, Any]]] = {}  # job name -> pods
        self.logs: dict[str, str] = {}  # pod name -> log text
        self.timeline: deque[dict[str, Any]] = deque()
        self.requests: list[tuple[str, str, dict[str, list[str]], Any]] = []
        self.max_requests = max_requests
        self.rv = 100
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _body(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                return json.loads(raw) if raw else None

            def _send(self, code: int, obj: Any, content_type: str = "application/json") -> None:
                data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                url = urlparse(self.path)
                query = parse_qs(url.query)
                body = self._body() if method in ("POST", "DELETE") else None
                with fake.lock:
                    fake.requests.append((method, url.path, query, body))
                    too_many = len(fake.requests) > fake.max_requests
                if too_many:
                    self._send(500, status_obj(500, "InternalError", "fake: too many requests (test loops?)"))
                    return
                fake.route(self, method, url.path, query, body)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_DELETE(self):
                self._handle("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # -- lifecycle ----------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeKube:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def api_client(self):
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.url
        return client.ApiClient(cfg)

    # -- state --------------------------------------------------------------------------------------------

    def _bump(self, job: dict[str, Any]) -> None:
        self.rv += 1
        job.setdefault("metadata", {})["resourceVersion"] = str(self.rv)

    def add_job(self, job: dict[str, Any], status: dict[str, Any] | None = None) -> None:
        job = copy.deepcopy(job)
        job.setdefault("metadata", {}).setdefault("uid", f"uid-{job['metadata']['name']}")
        job["metadata"].setdefault("creationTimestamp", "2026-11-21T00:00:00Z")
        job["status"] = status or {}
        self._bump(job)
        self.jobs[job["metadata"]["name"]] = job

    def calls(self, method: str, kind: str = "jobs") -> list[tuple[str, str, dict, Any]]:
        return [r for r in self.requests if r[0] == method and f"/{kind}" in r[1]]

    def apply(self, entry: dict[str, Any]) -> None:
        name = entry.get("job") or next(iter(self.jobs), None)
        if name is None:
            return
        job = self.jobs.get(name)
        if job is None:
            return
        if "status" in entry:
            job["status"] = entry["status"]
        if "pods" in entry:
            self.pods[name] = entry["pods"]
        self.logs.update(entry.get("logs") or {})
        self._bump(job)

    # -- routing ------------------------------------------------------------------------------------------

    def route(self, h, method: str, path: str, query: dict[str, list[str]], body: Any) -> None:
        m = JOBS.match(path)
        if m:
            ns, name = m.groups()
            if name is None and method == "POST":
                name = body["metadata"]["name"]
                if name in self.jobs:
                    return h._send(
                        409, status_obj(409, "AlreadyExists", f'jobs.batch "{name}" already exists')
                    )
                self.add_job({**body, "metadata": {**body["metadata"], "namespace": ns}})
                return h._send(201, self.jobs[name])
            if name is None and query.get("watch") == ["true"]:
                return self.watch(h, query)
            if name is None:
                return h._send(
                    200,
                    {
                        "kind": "JobList",
                        "apiVersion": "batch/v1",
                        "metadata": {},
                        "items": list(self.jobs.values()),
                    },
                )
            if method == "GET":
                if name not in self.jobs:
                    return h._send(404, status_obj(404, "NotFound", f'jobs.batch "{name}" not found'))
                return h._send(200, self.jobs[name])
            if method == "DELETE":
                if self.jobs.pop(name, None) is None:
                    return h._send(404, status_obj(404, "NotFound", f'jobs.batch "{name}" not found'))
                self.pods.pop(name, None)
                return h._send(
                    200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}}
                )
        m = PODS.match(path)
        if m and method == "GET":
            selector = (query.get("labelSelector") or [""])[0]
            job_name = selector.partition("=")[2]
            items = copy.deepcopy(self.pods.get(job_name, []))
            return h._send(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})
        m = LOG.match(path)
        if m and method == "GET":
            text = self.logs.get(m.group(2))
            if text is None:
                return h._send(400, status_obj(400, "BadRequest", "container is waiting to start"))
            if query.get("tailLines"):
                n = int(query["tailLines"][0])
                text = "\n".join(text.splitlines()[-n:]) + "\n"
            return h._send(200, text.encode(), "text/plain")
        return h._send(404, status_obj(404, "NotFound", f"fake: no route for {method} {path}"))

    def watch(self, h, query: dict[str, list[str]]) -> None:
        entry = self.timeline.popleft() if self.timeline else {}
        if entry.get("drop"):
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            h.wfile.write(b'5\r\n{"typ')  # a chunk cut short, then the connection goes away
            h.wfile.flush()
            h.close_connection = True
            h.connection.shutdown(2)
            return
        if entry.get("block"):
            time.sleep(entry["block"])
        lines = []
        if entry.get("watch_error"):
            code = entry["watch_error"]
            lines.append({"type": "ERROR", "object": status_obj(code, "Expired", "too old resource version")})
        else:
            self.apply(entry)
            name = entry.get("job") or next(iter(self.jobs), None)
            if entry.get("deleted") and name in self.jobs:
                lines.append({"type": "DELETED", "object": self.jobs.pop(name)})
            elif name in self.jobs and ("status" in entry or "pods" in entry):
                lines.append({"type": "MODIFIED", "object": self.jobs[name]})
        data = b"".join(json.dumps(x).encode() + b"\n" for x in lines)
        h._send(200, data)
