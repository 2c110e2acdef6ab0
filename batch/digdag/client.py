"""A typed client for Digdag's REST API (0.10.x shapes, see docs/digdag.md), on ``requests``.

* Connection errors, timeouts and 5xx answers are retried with exponential backoff; a start is safe to retry
  because Digdag answers a repeated start with 409 and the existing attempt.
* 401/403/404/409 become errors that say what to do; no error, log line or repr shows a token.
* Auth: extra headers (``--header``), and an IAP ID token minted by google-auth when the environment names an
  ``iap_audience`` (the server behind Identity-Aware Proxy).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import requests
import yaml

from batch.digdag.workflow import _DigLoader, load_workflow
from batch.errors import ConfigError, RecoError
from batch.logs import redact

log = logging.getLogger("reco.digdag.client")

MAX_ARCHIVE_BYTES = 2 * 1024 * 1024  # the server's default archive size limit
RETRY_STATUSES = {500, 502, 503, 504}


class DigdagError(RecoError):
    """The Digdag server refused or failed a request."""

    def __init__(self, message: str, *, status: int | None = None, hint: str | None = None, body: Any = None):
        super().__init__(message, hint=hint)
        self.status = status
        self.body = body


# -- typed answers ---------------------------------------------------------------------------------------------


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Project:
    id: str
    name: str
    revision: str | None = None
    archive_md5: str | None = None
    updated_at: str | None = None

    @classmethod
    def from_json(cls, d: dict) -> Project:
        return cls(str(d["id"]), d["name"], d.get("revision"), d.get("archiveMd5"), d.get("updatedAt"))


@dataclass(frozen=True)
class Workflow:
    id: str
    name: str
    project_id: str
    project_name: str
    revision: str | None
    timezone: str
    config: dict = field(default_factory=dict)

    @classmethod
    def from_json(cls, d: dict) -> Workflow:
        project = d.get("project") or {}
        return cls(
            str(d["id"]),
            d["name"],
            str(project.get("id", "")),
            project.get("name", ""),
            d.get("revision"),
            d.get("timezone") or "UTC",
            d.get("config") or {},
        )

    def session_time(self, day: date) -> datetime:
        """The session time of a session date: 00:00 of that day in the workflow's timezone."""
        return datetime.combine(day, dtime.min, tzinfo=ZoneInfo(self.timezone))


@dataclass(frozen=True)
class Attempt:
    id: str
    project_name: str
    workflow_name: str
    workflow_id: str
    session_id: str | None
    session_time: str
    retry_attempt_name: str | None
    done: bool
    success: bool
    cancel_requested: bool
    params: dict
    created_at: str | None
    finished_at: str | None
    index: int | None = None

    @classmethod
    def from_json(cls, d: dict) -> Attempt:
        project, wf = d.get("project") or {}, d.get("workflow") or {}
        return cls(
            str(d.get("id") or ""),
            project.get("name", ""),
            wf.get("name", ""),
            str(wf.get("id", "")),
            None if d.get("sessionId") is None else str(d["sessionId"]),
            d.get("sessionTime", ""),
            d.get("retryAttemptName"),
            bool(d.get("done")),
            bool(d.get("success")),
            bool(d.get("cancelRequested")),
            d.get("params") or {},
            d.get("createdAt"),
            d.get("finishedAt"),
            d.get("index"),
        )

    @property
    def status(self) -> str:
        """success | killed | error | running (Digdag derives it the same way)."""
        if self.success:
            return "success"
        if self.done:
            return "killed" if self.cancel_requested else "error"
        return "running"


@dataclass(frozen=True)
class TaskInfo:
    id: str
    full_name: str
    parent_id: str | None
    state: str
    is_group: bool
    error: dict
    started_at: str | None
    updated_at: str | None
    retry_at: str | None

    @classmethod
    def from_json(cls, d: dict) -> TaskInfo:
        return cls(
            str(d["id"]),
            d["fullName"],
            None if d.get("parentId") is None else str(d["parentId"]),
            d.get("state", ""),
            bool(d.get("isGroup")),
            d.get("error") or {},
            d.get("startedAt"),
            d.get("updatedAt"),
            d.get("retryAt"),
        )

    @property
    def error_message(self) -> str | None:
        return self.error.get("message") if self.error else None


@dataclass(frozen=True)
class Schedule:
    id: str
    project_id: str
    project_name: str
    workflow_id: str
    workflow_name: str
    next_run_time: str | None
    next_schedule_time: str | None
    disabled_at: str | None

    @classmethod
    def from_json(cls, d: dict) -> Schedule:
        project, wf = d.get("project") or {}, d.get("workflow") or {}
        return cls(
            str(d["id"]),
            str(project.get("id", "")),
            project.get("name", ""),
            str(wf.get("id", "")),
            wf.get("name", ""),
            d.get("nextRunTime"),
            d.get("nextScheduleTime"),
            d.get("disabledAt"),
        )

    @property
    def next_schedule(self) -> datetime | None:
        return _parse_time(self.next_schedule_time)


@dataclass(frozen=True)
class LogFile:
    file_name: str
    file_size: int
    task_name: str
    file_time: str | None

    @classmethod
    def from_json(cls, d: dict) -> LogFile:
        return cls(d["fileName"], int(d.get("fileSize") or 0), d.get("taskName", ""), d.get("fileTime"))


# -- the archive -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Archive:
    data: bytes
    files: list[str]
    revision: str


def _with_env(text: str, env: str) -> str:
    """A workflow with ``env`` exported at its top: what makes the pushed copy run against its environment."""
    data = yaml.load(text, Loader=_DigLoader)  # noqa: S506 - a SafeLoader subclass
    export = dict(data.get("_export") or {})
    export["env"] = env
    out: dict = {}
    for key, value in data.items():
        if str(key).startswith("+") and "_export" not in out:
            out["_export"] = export
        if key != "_export":
            out[key] = value
    out.setdefault("_export", export)
    header = f"# generated by `reco digdag push --env {env}` from the repository's copy; edit that one\n"
    return header + yaml.safe_dump(out, sort_keys=False, allow_unicode=True, width=120)


def build_archive(project_dir: Path, *, env: str) -> Archive:
    """tar.gz of what Digdag needs: the workflows (with ``env`` exported) and the .dig files they call.

    Deterministic (sorted names, fixed mtimes), so the same workflows give the same bytes and revision.
    """
    project_dir = Path(project_dir).resolve()
    workflows = sorted(project_dir.glob("*.dig"))
    if not workflows:
        raise ConfigError(f"{project_dir}: no workflow (.dig) to push")
    contents: dict[str, bytes] = {}
    for wf_path in workflows:
        wf = load_workflow(wf_path)  # validates, and lists what it calls
        contents[wf_path.name] = _with_env(wf_path.read_text(), env).encode()
        for called in wf.files[1:]:
            rel = called.resolve().relative_to(project_dir)
            contents[str(rel)] = called.read_bytes()
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for name in sorted(contents):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(contents[name]), 0, 0o644
            tar.addfile(info, io.BytesIO(contents[name]))
    data = buf.getvalue()
    if len(data) >= MAX_ARCHIVE_BYTES:
        raise ConfigError(
            f"{project_dir}: project archive is {len(data):,} bytes; Digdag accepts under "
            f"{MAX_ARCHIVE_BYTES:,}",
            hint="keep data and code out of digdag/: tasks run `reco` commands",
        )
    digest = hashlib.sha256(data).hexdigest()[:12]
    return Archive(data, sorted(contents), f"{env}-{digest}")


# -- auth ------------------------------------------------------------------------------------------------------


def parse_headers(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise ConfigError("--header: expected 'Name: value'")
        out[name.strip()] = value.strip()
    return out


class IapTokenSource:
    """ID tokens for a server behind IAP, minted by google-auth from the ambient credentials, cached ~50 min."""

    def __init__(self, audience: str, fetch: Callable[[str], str] | None = None, ttl_s: float = 3000):
        self.audience = audience
        self._fetch = fetch or self._google_fetch
        self.ttl_s = ttl_s
        self._token: str | None = None
        self._at = 0.0
        self._lock = threading.Lock()

    @staticmethod
    def _google_fetch(audience: str) -> str:
        import google.auth.transport.requests
        from google.auth import exceptions
        from google.oauth2 import id_token

        try:
            return id_token.fetch_id_token(google.auth.transport.requests.Request(), audience)
        except exceptions.GoogleAuthError as e:
            raise DigdagError(
                f"cannot mint an IAP ID token: {type(e).__name__}",
                hint="run with a service account (GOOGLE_APPLICATION_CREDENTIALS or workload "
                "identity) that may reach the Digdag server",
            ) from None

    def __call__(self) -> str:
        with self._lock:
            if self._token is None or time.monotonic() - self._at > self.ttl_s:
                self._token = self._fetch(self.audience)
                self._at = time.monotonic()
            return self._token

    def __repr__(self) -> str:
        return f"IapTokenSource(audience={self.audience!r})"


# -- the client ------------------------------------------------------------------------------------------------


class DigdagClient:
    def __init__(
        self,
        endpoint: str,
        *,
        headers: dict[str, str] | None = None,
        token: Callable[[], str] | None = None,
        retries: int = 4,
        backoff_s: float = 0.5,
        timeout_s: float = 30.0,
        session: requests.Session | None = None,
        sleep=time.sleep,
    ):
        if not endpoint:
            raise ConfigError(
                "no Digdag endpoint",
                hint="pass --endpoint, set DIGDAG_ENDPOINT, or set "
                "digdag.endpoint in config/environments.yaml",
            )
        self.endpoint = endpoint.rstrip("/")
        self._headers = dict(headers or {})
        self._token = token
        self.retries = max(0, retries)
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.session = session or requests.Session()
        self.sleep = sleep

    def __repr__(self) -> str:
        return f"DigdagClient({self.endpoint!r})"

    @classmethod
    def for_environment(
        cls, env_cfg, *, endpoint: str | None = None, headers: dict[str, str] | None = None, **kwargs
    ) -> DigdagClient:
        url = endpoint or os.environ.get("DIGDAG_ENDPOINT") or env_cfg.digdag.endpoint
        if not url:
            raise ConfigError(
                f"environment {env_cfg.name} has no Digdag endpoint",
                hint="pass --endpoint, set DIGDAG_ENDPOINT, or set environments."
                f"{env_cfg.name}.digdag.endpoint in config/environments.yaml",
            )
        token = IapTokenSource(env_cfg.digdag.iap_audience) if env_cfg.digdag.iap_audience else None
        return cls(url, headers=headers, token=token, **kwargs)

    # -- transport -----------------------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: dict | None = None,
        json: Any = None,
        data: bytes | None = None,
        headers: dict | None = None,
        ok: tuple[int, ...] = (200,),
        accept_conflict: bool = False,
    ) -> requests.Response:
        url = f"{self.endpoint}{path}"
        hdrs = {"Accept": "application/json", **self._headers, **(headers or {})}
        if self._token is not None:
            hdrs["Authorization"] = f"Bearer {self._token()}"
        for attempt in range(self.retries + 1):
            reason: str
            try:
                resp = self.session.request(
                    method, url, params=params, json=json, data=data, headers=hdrs, timeout=self.timeout_s
                )
            except (requests.ConnectionError, requests.Timeout) as e:
                reason = f"{type(e).__name__}"
            else:
                if resp.status_code in ok or (accept_conflict and resp.status_code == 409):
                    return resp
                if resp.status_code not in RETRY_STATUSES:
                    raise self._error(resp, method, path, what)
                reason = f"HTTP {resp.status_code}"
            if attempt == self.retries:
                raise DigdagError(
                    f"Digdag at {self.endpoint}: {method} {path} failed after {attempt + 1} tries ({reason})",
                    hint="is the server up? `reco digdag schedules` checks the connection",
                )
            wait = self.backoff_s * 2**attempt
            log.warning(
                "digdag request failed; retrying",
                extra={"method": method, "path": path, "reason": reason, "wait_s": wait},
            )
            self.sleep(wait)
        raise AssertionError("unreachable")

    def _error(self, resp: requests.Response, method: str, path: str, what: str) -> DigdagError:
        try:
            body = resp.json()
            message = body.get("message") if isinstance(body, dict) else None
        except ValueError:
            body, message = None, resp.text[:200]
        detail = redact(str(message)) if message else ""
        status = resp.status_code
        base = f"Digdag at {self.endpoint}: {what}"
        if status == 401:
            return DigdagError(
                f"{base}: not authenticated (401)",
                status=status,
                hint="behind IAP set digdag.iap_audience for the env and run with Google "
                "credentials, or pass --header 'Authorization: ...'",
            )
        if status == 403:
            return DigdagError(
                f"{base}: forbidden (403)",
                status=status,
                hint="the caller needs access to the Digdag server (IAP-secured Web App User)",
            )
        if status == 404:
            return DigdagError(
                f"{base}: not found (404){': ' + detail if detail else ''}",
                status=status,
                hint="check the id or name; `reco digdag push` creates the project and workflows",
            )
        if status == 409:
            return DigdagError(
                f"{base}: conflict (409){': ' + detail if detail else ''}", status=status, body=body
            )
        return DigdagError(
            f"{base}: {method} {path} answered {status}{': ' + detail if detail else ''}",
            status=status,
            body=body,
        )

    # -- projects and workflows ----------------------------------------------------------------------------

    def version(self) -> str:
        return self._request("GET", "/api/version", what="version").json().get("version", "")

    def push_project(self, name: str, archive: bytes, revision: str) -> Project:
        if len(archive) >= MAX_ARCHIVE_BYTES:
            raise ConfigError(
                f"project archive is {len(archive):,} bytes; Digdag accepts under {MAX_ARCHIVE_BYTES:,}"
            )
        resp = self._request(
            "PUT",
            "/api/projects",
            what=f"push project {name}",
            params={"project": name, "revision": revision},
            data=archive,
            headers={"Content-Type": "application/gzip", "Content-Length": str(len(archive))},
        )
        return Project.from_json(resp.json())

    def find_project(self, name: str) -> Project:
        projects = (
            self._request("GET", "/api/projects", what=f"project {name}", params={"name": name})
            .json()
            .get("projects", [])
        )
        for p in projects:
            if p.get("name") == name:
                return Project.from_json(p)
        raise DigdagError(
            f"Digdag at {self.endpoint}: no project named {name!r}",
            status=404,
            hint="push it first: reco digdag push --env ENV",
        )

    def find_workflow(self, project_id: str, name: str) -> Workflow:
        wfs = (
            self._request(
                "GET", f"/api/projects/{project_id}/workflows", what=f"workflow {name}", params={"name": name}
            )
            .json()
            .get("workflows", [])
        )
        for w in wfs:
            if w.get("name") == name:
                return Workflow.from_json(w)
        raise DigdagError(
            f"Digdag at {self.endpoint}: project {project_id} has no workflow {name!r}",
            status=404,
            hint=f"is digdag/{name}.dig pushed? reco digdag push --env ENV",
        )

    # -- attempts ------------------------------------------------------------------------------------------

    def start_attempt(
        self,
        workflow_id: str,
        session_time: datetime | str,
        params: dict | None = None,
        *,
        retry_attempt_name: str | None = None,
        resume: dict | None = None,
    ) -> tuple[Attempt, bool]:
        """Start an attempt; (attempt, True) when created, (existing attempt, False) when Digdag answers 409."""
        body: dict[str, Any] = {
            "workflowId": workflow_id,
            "sessionTime": session_time.isoformat() if isinstance(session_time, datetime) else session_time,
            "params": params or {},
        }
        if retry_attempt_name:
            body["retryAttemptName"] = retry_attempt_name
        if resume:
            body["resume"] = resume
        resp = self._request(
            "PUT", "/api/attempts", what=f"start workflow {workflow_id}", json=body, accept_conflict=True
        )
        if resp.status_code == 409:
            try:
                existing = resp.json()
                return Attempt.from_json(existing), False
            except (ValueError, KeyError):
                raise DigdagError(
                    f"Digdag at {self.endpoint}: an attempt for this session already exists (409)", status=409
                ) from None
        return Attempt.from_json(resp.json()), True

    def attempt(self, attempt_id: str) -> Attempt:
        return Attempt.from_json(
            self._request("GET", f"/api/attempts/{attempt_id}", what=f"attempt {attempt_id}").json()
        )

    def attempts(
        self,
        *,
        project: str | None = None,
        workflow: str | None = None,
        include_retried: bool = False,
        last_id: str | None = None,
        page_size: int | None = None,
    ) -> list[Attempt]:
        params = {
            k: v
            for k, v in {
                "project": project,
                "workflow": workflow,
                "include_retried": str(include_retried).lower(),
                "last_id": last_id,
                "page_size": page_size,
            }.items()
            if v is not None
        }
        data = self._request("GET", "/api/attempts", what="attempts", params=params).json()
        return [Attempt.from_json(a) for a in data.get("attempts", [])]

    def wait(
        self,
        attempt_id: str,
        *,
        poll_s: float = 15.0,
        timeout_s: float | None = None,
        on_poll: Callable[[Attempt], None] | None = None,
    ) -> Attempt:
        started = time.monotonic()
        while True:
            a = self.attempt(attempt_id)
            if a.done:
                return a
            if on_poll:
                on_poll(a)
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                raise DigdagError(
                    f"attempt {attempt_id} still running after {timeout_s:g}s",
                    hint=f"reco digdag status {attempt_id}",
                )
            self.sleep(poll_s)

    def tasks(self, attempt_id: str) -> list[TaskInfo]:
        data = self._request(
            "GET", f"/api/attempts/{attempt_id}/tasks", what=f"tasks of attempt {attempt_id}"
        ).json()
        return [TaskInfo.from_json(t) for t in data.get("tasks", [])]

    def kill(self, attempt_id: str) -> bool:
        """True when the kill was requested; False when the attempt was already done (409)."""
        resp = self._request(
            "POST",
            f"/api/attempts/{attempt_id}/kill",
            what=f"kill attempt {attempt_id}",
            ok=(200, 204),
            accept_conflict=True,
        )
        return resp.status_code != 409

    def retry_failed(self, attempt_id: str, retry_attempt_name: str) -> tuple[Attempt, bool]:
        """A new attempt of the same session that reruns only the failed tasks (``resume: {mode: failed}``)."""
        a = self.attempt(attempt_id)
        if not a.done:
            raise DigdagError(
                f"attempt {attempt_id} is still running", hint=f"reco digdag kill {attempt_id} first"
            )
        if a.success:
            raise DigdagError(f"attempt {attempt_id} succeeded; nothing to retry")
        return self.start_attempt(
            a.workflow_id,
            a.session_time,
            a.params,
            retry_attempt_name=retry_attempt_name,
            resume={"mode": "failed", "attemptId": a.id},
        )

    # -- logs ----------------------------------------------------------------------------------------------

    def log_files(self, attempt_id: str, task: str | None = None) -> list[LogFile]:
        params = {"task": task} if task else None
        data = self._request(
            "GET", f"/api/logs/{attempt_id}/files", what=f"log files of attempt {attempt_id}", params=params
        ).json()
        return [LogFile.from_json(f) for f in data.get("files", [])]

    def log_file(self, attempt_id: str, file_name: str) -> str:
        resp = self._request(
            "GET", f"/api/logs/{attempt_id}/files/{quote(file_name, safe='')}", what=f"log file {file_name}"
        )
        raw = resp.content
        if raw[:2] == b"\x1f\x8b":  # the server stores and serves log files gzipped
            raw = gzip.decompress(raw)
        return raw.decode("utf-8", errors="replace")

    def task_log(self, attempt_id: str, task: str) -> str:
        files = sorted(self.log_files(attempt_id, task), key=lambda f: (f.file_time or "", f.file_name))
        return "".join(self.log_file(attempt_id, f.file_name) for f in files)

    def failed_task_log_tail(self, attempt_id: str, lines: int = 40) -> tuple[TaskInfo | None, str]:
        failed = [t for t in self.tasks(attempt_id) if t.state == "error" and not t.is_group]
        if not failed:
            return None, ""
        task = failed[0]
        text = self.task_log(attempt_id, task.full_name)
        tail = "\n".join(text.splitlines()[-lines:])
        return task, redact(tail)

    # -- schedules -----------------------------------------------------------------------------------------

    def schedules(self, *, project_id: str | None = None, workflow: str | None = None) -> list[Schedule]:
        if project_id is None:
            data = self._request("GET", "/api/schedules", what="schedules").json()
        else:
            params = {"workflow": workflow} if workflow else None
            data = self._request(
                "GET", f"/api/projects/{project_id}/schedules", what="schedules", params=params
            ).json()
        return [Schedule.from_json(s) for s in data.get("schedules", [])]

    def backfill(
        self,
        schedule_id: str,
        from_time: datetime,
        attempt_name: str,
        *,
        count: int | None = None,
        dry_run: bool = False,
    ) -> list[Attempt]:
        body: dict[str, Any] = {
            "fromTime": from_time.isoformat(),
            "attemptName": attempt_name,
            "dryRun": dry_run,
        }
        if count is not None:
            body["count"] = count
        resp = self._request(
            "POST",
            f"/api/schedules/{schedule_id}/backfill",
            what=f"backfill schedule {schedule_id}",
            json=body,
            accept_conflict=True,
        )
        if resp.status_code == 409:
            raise DigdagError(
                f"Digdag at {self.endpoint}: a session in this range already has an attempt named "
                f"{attempt_name!r} (409)",
                status=409,
                hint="use another --name; re-running a date is safe",
            )
        return [Attempt.from_json(a) for a in resp.json().get("attempts", [])]

    def skip_schedule(
        self,
        schedule_id: str,
        *,
        next_time: datetime | None = None,
        from_time: datetime | None = None,
        count: int | None = None,
        dry_run: bool = False,
    ) -> Schedule:
        body: dict[str, Any] = {"dryRun": dry_run}
        if next_time is not None:
            body["nextTime"] = next_time.isoformat()
        if from_time is not None:
            body["fromTime"] = from_time.isoformat()
            body["count"] = count
        return Schedule.from_json(
            self._request(
                "POST", f"/api/schedules/{schedule_id}/skip", what=f"skip schedule {schedule_id}", json=body
            ).json()
        )

    def disable_schedule(self, schedule_id: str) -> Schedule:
        return Schedule.from_json(
            self._request(
                "POST", f"/api/schedules/{schedule_id}/disable", what=f"pause schedule {schedule_id}"
            ).json()
        )

    def enable_schedule(
        self, schedule_id: str, *, skip_schedule: bool | None = None, next_time: datetime | None = None
    ) -> Schedule:
        body: dict[str, Any] = {}
        if skip_schedule is not None:
            body["skipSchedule"] = skip_schedule
        if next_time is not None:
            body["nextTime"] = next_time.isoformat()
        return Schedule.from_json(
            self._request(
                "POST",
                f"/api/schedules/{schedule_id}/enable",
                what=f"resume schedule {schedule_id}",
                json=body,
            ).json()
        )
