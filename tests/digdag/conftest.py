"""An in-process Digdag API server (stdlib http.server in a thread) that follows the 0.10.x REST shapes the client
uses, with hooks to inject failures; and a helper that writes workflow files."""

from __future__ import annotations

import gzip
import json
import re
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import pytest


class FakeDigdag:
    def __init__(self):
        self.requests: list[tuple[str, str, dict, object]] = []  # method, path, query, body
        self.fail_next: list[int] = []  # statuses to answer before handling normally
        self.require_token: str | None = None
        self.projects: dict[str, dict] = {}
        self.workflows: dict[str, dict] = {}
        self.attempts: dict[str, dict] = {}
        self.tasks: dict[str, list[dict]] = {}
        self.logs: dict[tuple[str, str], bytes] = {}
        self.schedules: dict[str, dict] = {}
        self.backfill_names: set[tuple[str, str]] = set()
        self.archives: list[bytes] = []
        self._next = 100
        self.lock = threading.Lock()

    def new_id(self) -> str:
        self._next += 1
        return str(self._next)

    def add_workflow(
        self,
        project: str = "reco",
        name: str = "demo",
        timezone: str = "Asia/Tokyo",
        schedule: dict | None = None,
        next_schedule_time: str | None = None,
    ) -> dict:
        pid = next((p["id"] for p in self.projects.values() if p["name"] == project), None)
        if pid is None:
            pid = self.new_id()
            self.projects[pid] = {"id": pid, "name": project, "revision": "r1", "archiveMd5": "x"}
        wid = self.new_id()
        config = {"schedule": schedule} if schedule else {}
        wf = {
            "id": wid,
            "name": name,
            "project": {"id": pid, "name": project},
            "revision": "r1",
            "timezone": timezone,
            "config": config,
        }
        self.workflows[wid] = wf
        if schedule:
            sid = self.new_id()
            self.schedules[sid] = {
                "id": sid,
                "project": {"id": pid, "name": project},
                "workflow": {"id": wid, "name": name},
                "nextRunTime": "2026-11-25T19:00:00Z",
                "nextScheduleTime": next_schedule_time or "2026-11-26T00:00:00+09:00",
                "disabledAt": None,
            }
        return wf

    def add_attempt(
        self, wf: dict, session_time: str, *, done=True, success=False, retry=None, params=None
    ) -> dict:
        aid = self.new_id()
        a = {
            "id": aid,
            "index": 1,
            "project": wf["project"],
            "workflow": {"name": wf["name"], "id": wf["id"]},
            "sessionId": "9",
            "sessionUuid": "u",
            "sessionTime": session_time,
            "retryAttemptName": retry,
            "done": done,
            "success": success,
            "cancelRequested": False,
            "params": params or {},
            "createdAt": "2026-11-21T19:00:00Z",
            "finishedAt": None,
        }
        self.attempts[aid] = a
        return a


def _json(handler, status: int, body) -> None:
    data = b"" if body is None else json.dumps(body).encode()
    handler.send_response(status)
    if body is not None:
        handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def make_handler(state: FakeDigdag):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _body(self):
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            if self.headers.get("Content-Type", "").startswith("application/json") and raw:
                return json.loads(raw)
            return raw

        def _handle(self, method: str):
            url = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            body = self._body()
            with state.lock:
                state.requests.append((method, url.path, query, body))
                if state.fail_next:
                    return _json(self, state.fail_next.pop(0), {"message": "injected"})
                if (
                    state.require_token
                    and self.headers.get("Authorization") != f"Bearer {state.require_token}"
                ):
                    return _json(self, 401, {"message": "unauthorized"})
                return self.route(method, url.path, query, body)

        def do_GET(self):
            self._handle("GET")

        def do_PUT(self):
            self._handle("PUT")

        def do_POST(self):
            self._handle("POST")

        def route(self, method, path, q, body):
            s = state
            if path == "/api/version":
                return _json(self, 200, {"version": "0.10.5"})
            if method == "PUT" and path == "/api/projects":
                if int(self.headers.get("Content-Length") or 0) > 2 * 1024 * 1024:
                    return _json(self, 413, {"message": "too large"})
                s.archives.append(body)
                pid = (
                    next((p["id"] for p in s.projects.values() if p["name"] == q["project"]), None)
                    or s.new_id()
                )
                s.projects[pid] = {
                    "id": pid,
                    "name": q["project"],
                    "revision": q["revision"],
                    "archiveMd5": "md5",
                    "createdAt": "t",
                    "updatedAt": "t",
                    "deletedAt": None,
                    "archiveType": "db",
                }
                return _json(self, 200, s.projects[pid])
            if path == "/api/projects":
                return _json(
                    self, 200, {"projects": [p for p in s.projects.values() if p["name"] == q.get("name")]}
                )
            m = re.fullmatch(r"/api/projects/(\w+)/workflows", path)
            if m:
                if m.group(1) not in s.projects:
                    return _json(self, 404, {"message": "project not found"})
                wfs = [
                    w
                    for w in s.workflows.values()
                    if w["project"]["id"] == m.group(1) and (not q.get("name") or w["name"] == q["name"])
                ]
                return _json(self, 200, {"workflows": wfs})
            m = re.fullmatch(r"/api/projects/(\w+)/schedules", path)
            if m:
                sch = [
                    x
                    for x in s.schedules.values()
                    if x["project"]["id"] == m.group(1)
                    and (not q.get("workflow") or x["workflow"]["name"] == q["workflow"])
                ]
                return _json(self, 200, {"schedules": sch})
            if path == "/api/schedules":
                return _json(self, 200, {"schedules": list(s.schedules.values())})
            if method == "PUT" and path == "/api/attempts":
                wf = s.workflows.get(str(body["workflowId"]))
                if wf is None:
                    return _json(self, 404, {"message": "workflow not found"})
                st = datetime.fromisoformat(body["sessionTime"])
                for a in s.attempts.values():
                    if (
                        a["workflow"]["id"] == wf["id"]
                        and datetime.fromisoformat(a["sessionTime"]) == st
                        and a["retryAttemptName"] == body.get("retryAttemptName")
                    ):
                        return _json(self, 409, a)
                a = s.add_attempt(
                    wf,
                    body["sessionTime"],
                    done=False,
                    retry=body.get("retryAttemptName"),
                    params=body.get("params"),
                )
                a["resume"] = body.get("resume")
                return _json(self, 200, a)
            m = re.fullmatch(r"/api/attempts/(\w+)", path)
            if m:
                a = s.attempts.get(m.group(1))
                return (
                    _json(self, 200, a)
                    if a
                    else _json(self, 404, {"message": f"attempt {m.group(1)} not found"})
                )
            m = re.fullmatch(r"/api/attempts/(\w+)/tasks", path)
            if m:
                return _json(self, 200, {"tasks": s.tasks.get(m.group(1), [])})
            m = re.fullmatch(r"/api/attempts/(\w+)/kill", path)
            if m:
                a = s.attempts.get(m.group(1))
                if a is None:
                    return _json(self, 404, {"message": "not found"})
                if a["done"]:
                    return _json(self, 409, {"message": "already done"})
                a["cancelRequested"] = True
                return _json(self, 204, None)
            m = re.fullmatch(r"/api/logs/(\w+)/files", path)
            if m:
                files = [
                    {"fileName": fn, "fileSize": len(data), "taskName": task, "fileTime": "t", "agentId": "a"}
                    for (aid, fn), data in s.logs.items()
                    if aid == m.group(1)
                    for task in [fn.split("@")[0]]
                    if not q.get("task") or q["task"] == task
                ]
                return _json(self, 200, {"files": files})
            m = re.fullmatch(r"/api/logs/(\w+)/files/(.+)", path)
            if m:
                data = s.logs.get((m.group(1), unquote(m.group(2))))
                if data is None:
                    return _json(self, 404, {"message": "no log"})
                self.send_response(200)
                self.send_header("Content-Type", "application/gzip")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return None
            m = re.fullmatch(r"/api/schedules/(\w+)/(backfill|skip|disable|enable)", path)
            if m:
                sch = s.schedules.get(m.group(1))
                if sch is None:
                    return _json(self, 404, {"message": "schedule not found"})
                action = m.group(2)
                if action == "backfill":
                    key = (m.group(1), body["attemptName"])
                    if key in s.backfill_names and not body.get("dryRun"):
                        return _json(self, 409, {"message": "attempt name already used"})
                    wf = s.workflows[sch["workflow"]["id"]]
                    start = datetime.fromisoformat(body["fromTime"])
                    from datetime import timedelta

                    attempts = []
                    for i in range(body.get("count") or 1):
                        st = (start + timedelta(days=i)).isoformat()
                        if body.get("dryRun"):
                            attempts.append(
                                {
                                    "id": None,
                                    "workflow": {"name": wf["name"], "id": wf["id"]},
                                    "sessionTime": st,
                                    "retryAttemptName": body["attemptName"],
                                }
                            )
                        else:
                            attempts.append(s.add_attempt(wf, st, done=False, retry=body["attemptName"]))
                    if not body.get("dryRun"):
                        s.backfill_names.add(key)
                    return _json(
                        self,
                        200,
                        {
                            "id": sch["id"],
                            "project": sch["project"],
                            "workflow": sch["workflow"],
                            "attempts": attempts,
                        },
                    )
                if action == "disable":
                    sch["disabledAt"] = "2026-11-21T00:00:00Z"
                elif action == "enable":
                    sch["disabledAt"] = None
                elif action == "skip":
                    sch["nextScheduleTime"] = body.get("nextTime") or sch["nextScheduleTime"]
                return _json(self, 200, sch)
            return _json(self, 404, {"message": f"no route {method} {path}"})

    return Handler


@pytest.fixture
def digdag_server():
    state = FakeDigdag()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def gz(text: str) -> bytes:
    return gzip.compress(text.encode())


@pytest.fixture
def write_dig(tmp_path):
    """write_dig("name.dig", text) -> Path, under a fresh project directory."""
    project = tmp_path / "project"
    project.mkdir()

    def write(name: str, text: str) -> Path:
        path = project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    write.dir = project
    return write
