"""Run a .dig workflow here, with Digdag's semantics for the subset in batch/digdag/workflow.py.

What matches Digdag:

* ``+tasks`` run top to bottom; ``_parallel: true`` runs a group's direct children together, ``{limit: N}`` at most N
  at a time. After a child fails no further sibling starts; running ones finish; then the group fails.
* Variables: session (``-p``) parameters, then ``_export`` from the outside in (an ``_export`` in the file wins over
  ``-p``, as in Digdag), then the task's own keys; built-in variables (session_*, last_/next_session_* when the
  workflow has a schedule, task_name, attempt_id, ...) win over everything.
* ``_retry`` reruns the task (a group: the whole group) up to ``limit`` more times, waiting ``interval`` seconds
  (doubled each time with ``interval_type: exponential``, capped by ``max_interval``).
* ``_error`` runs once the task has failed for good, with ``${error.message}``; then the failure goes on to the
  parent, whose own ``_error`` runs too. The attempt fails.
* ``sh>``: each parameter whose name is a valid environment key becomes an environment variable, plus ``_env``;
  the working directory is the directory of the file that defines the task.
* ``sla:`` with ``duration`` or ``time`` counted from the attempt's start runs its tasks once when the attempt is
  still running at the deadline.
* Stopping (``digdag kill``; here SIGTERM or Ctrl-C to ``reco digdag run``): the running tasks' processes are
  stopped, no further task starts, no ``_retry`` and no ``_error`` runs, and the attempt ends failed.

Each ``sh>`` task runs in its own process group (session), so SIGTERM reaches everything it started (``reco
submit`` and the step processes under it), then SIGKILL after ``kill_grace_s`` for whatever is left.

Local-only: ``${secret:slack.webhook_url}`` reads the environment variable SLACK_WEBHOOK_URL (the key upper-cased,
every other character an underscore), or is empty. Each attempt gets a numeric id and leaves a JSON record in
``$RECO_HOME/digdag/attempts/<id>.json`` (task states, errors, the last lines of each task's output), which
``reco notify failure --attempt ID --env local`` reads to name the failed task.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TextIO

from batch.config import reco_home
from batch.digdag.workflow import (
    Task,
    UndefinedVariable,
    Workflow,
    WorkflowError,
    format_value,
    is_env_key,
    load_workflow,
    render,
    secret_env_name,
)
from batch.logs import redact
from batch.prefork import ForkedReco, preload, reco_args, spawn_mode

log = logging.getLogger("reco.digdag.local")
TAIL_LINES = 40


class TaskFailed(Exception):
    def __init__(self, message: str, task: str, tail: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.task = task
        self.tail = tail or []


@dataclass
class TaskRecord:
    fullName: str
    state: str = "running"  # running | success | error | skipped
    startedAt: str | None = None
    finishedAt: str | None = None
    retries: int = 0
    error: str | None = None
    isGroup: bool = False
    tail: list[str] = field(default_factory=list)


@dataclass
class AttemptResult:
    attempt_id: str
    workflow: str
    session_time: str
    success: bool
    error: str | None = None
    failed_task: str | None = None
    sla_missed: bool = False
    tasks: list[TaskRecord] = field(default_factory=list)
    record_path: str | None = None
    terminated_by: str | None = None  # "SIGTERM" / "SIGINT" when the attempt was stopped

    @property
    def exit_code(self) -> int:
        """What ``reco digdag run`` exits with: 0, 1 (a task failed) or 128 + the signal that stopped it."""
        if self.terminated_by:
            return 128 + int(getattr(signal, self.terminated_by))
        return 0 if self.success else 1

    @property
    def order(self) -> list[str]:
        """Task names in the order they started."""
        return [t.fullName for t in self.tasks]


def attempts_dir() -> Path:
    return reco_home() / "digdag" / "attempts"


def _new_attempt_id() -> str:
    d = attempts_dir()
    d.mkdir(parents=True, exist_ok=True)
    nums = [int(p.stem) for p in d.glob("*.json") if p.stem.isdigit()]
    n = max(nums, default=0) + 1
    while True:
        try:
            fd = os.open(d / f"{n}.json", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.close(fd)
            return str(n)
        except FileExistsError:
            n += 1


def read_attempt_record(attempt_id: str) -> dict | None:
    path = attempts_dir() / f"{attempt_id}.json"
    try:
        return json.loads(path.read_text() or "null")
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _time_vars(prefix: str, t: datetime) -> dict[str, Any]:
    return {
        f"{prefix}_time": t.isoformat(),
        f"{prefix}_date": t.strftime("%Y-%m-%d"),
        f"{prefix}_date_compact": t.strftime("%Y%m%d"),
        f"{prefix}_local_time": t.strftime("%Y-%m-%d %H:%M:%S"),
        f"{prefix}_tz_offset": t.strftime("%z"),
        f"{prefix}_unixtime": int(t.timestamp()),
    }


def builtin_variables(
    wf: Workflow,
    session_time: datetime,
    *,
    attempt_id: str,
    session_id: str,
    retry_attempt_name: str = "",
    project_id: str = "1",
) -> dict[str, Any]:
    """Digdag's built-in variables for one attempt (task_name is added per task)."""
    out: dict[str, Any] = {
        "timezone": wf.timezone,
        "session_uuid": str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"reco-local/{wf.name}/{session_time.isoformat()}")
        ),
        "session_id": session_id,
        "attempt_id": attempt_id,
        "project_id": project_id,
        "retry_attempt_name": retry_attempt_name,
        **_time_vars("session", session_time),
    }
    if wf.schedule is not None:
        out.update(_time_vars("last_session", wf.schedule.last_session(session_time)))
        out.update(_time_vars("next_session", wf.schedule.next_session(session_time)))
    return out


def _merge_scope(scope: dict, export: dict, where: Task) -> dict:
    out = dict(scope)
    for key, value in export.items():
        try:
            rendered = render(copy.deepcopy(value), out) if key != "_env" else value
        except UndefinedVariable as e:
            raise WorkflowError(
                f"_export.{key}: ${{{e.name}}} is not defined", file=where.file, task=where.full_name
            ) from None
        if key == "_env":
            out["_env"] = {**(out.get("_env") or {}), **value}
        else:
            out[key] = rendered
    return out


class LocalRunner:
    def __init__(
        self,
        workflow: Workflow,
        session_date: date,
        params: dict[str, Any] | None = None,
        *,
        out: TextIO | None = None,
        retry_attempt_name: str = "",
        sleep=None,
        environ: dict[str, str] | None = None,
        kill_grace_s: float = 10.0,
    ):
        self.wf = workflow
        self.session_time = workflow.session_time(session_date)
        self.params = dict(params or {})
        self.out = out or sys.stdout
        self._stop = threading.Event()  # set when the attempt is told to stop (SIGTERM, SIGINT)
        self.sleep = sleep or self._stop.wait  # a retry wait ends early when the attempt stops
        self.kill_grace_s = kill_grace_s
        self._stopped_by: str | None = None
        self._procs: dict[
            int, subprocess.Popen | ForkedReco
        ] = {}  # running sh> tasks by pid (= their process group)
        self._procs_lock = threading.RLock()  # re-entrant: the signal handler runs in the main thread
        self.environ = dict(os.environ if environ is None else environ)
        self.retry_attempt_name = retry_attempt_name
        self._lock = threading.Lock()
        self._records: list[TaskRecord] = []
        self._secret_values: set[str] = set()
        self._first_failure: TaskFailed | None = None
        self._sla_missed = False
        self._sla_failed = False
        self.attempt_id = ""

    # -- the attempt ---------------------------------------------------------------------------------------------

    def run(self) -> AttemptResult:
        self.attempt_id = _new_attempt_id()
        self.record_path = attempts_dir() / f"{self.attempt_id}.json"
        self.builtins = builtin_variables(
            self.wf,
            self.session_time,
            attempt_id=self.attempt_id,
            session_id=self.attempt_id,
            retry_attempt_name=self.retry_attempt_name,
        )
        self._say(
            f"digdag local: attempt {self.attempt_id} of {self.wf.name} session {self.builtins['session_time']}"
        )
        log.info(
            "attempt started",
            extra={
                "workflow": self.wf.name,
                "attempt_id": self.attempt_id,
                "session_time": self.builtins["session_time"],
            },
        )
        started = datetime.now(self.wf.tz)
        timer = None
        if self.wf.sla is not None:
            delay = (self.wf.sla.deadline(started) - started).total_seconds()
            timer = threading.Timer(max(delay, 0.0), self._sla_fire)
            timer.daemon = True
            timer.start()
        self._write_record(done=False)
        success, error = True, None
        handlers = self._install_signal_handlers()
        try:
            self._run(self.wf.root, dict(self.params))
        except TaskFailed as e:
            success, error = False, e.message
        finally:
            if timer is not None:
                timer.cancel()
                timer.join()  # an SLA task already under way finishes first
            for signum, previous in handlers.items():
                signal.signal(signum, previous)
        if self._sla_failed and success:
            success, error = False, "SLA missed (sla: fail: true)"
        if self._stopped_by:
            success, error = False, f"attempt stopped by {self._stopped_by}"
        failed = self._first_failure.task if self._first_failure else None
        self._write_record(done=True, success=success)
        self._say(
            f"digdag local: attempt {self.attempt_id} {'succeeded' if success else 'FAILED'}"
            + (f" at {failed}: {error}" if failed else "")
        )
        log.log(
            logging.INFO if success else logging.ERROR,
            "attempt finished",
            extra={
                "workflow": self.wf.name,
                "attempt_id": self.attempt_id,
                "success": success,
                "failed_task": failed,
            },
        )
        return AttemptResult(
            self.attempt_id,
            self.wf.name,
            self.builtins["session_time"],
            success,
            error,
            failed,
            self._sla_missed,
            list(self._records),
            str(self.record_path),
            self._stopped_by,
        )

    # -- stopping ------------------------------------------------------------------------------------------------

    def _install_signal_handlers(self) -> dict:
        """SIGTERM and SIGINT stop the attempt (only the main thread can take signals); returns what to restore."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {signum: signal.signal(signum, self._on_signal) for signum in (signal.SIGTERM, signal.SIGINT)}

    def _on_signal(self, signum, frame) -> None:
        self.stop(signal.Signals(signum).name)

    def stop(self, reason: str = "SIGTERM") -> None:
        """Stop the attempt: SIGTERM to every running task's process group, SIGKILL after the grace period."""
        if self._stop.is_set():
            return
        self._stopped_by = reason
        self._stop.set()
        with self._procs_lock:
            pids = list(self._procs)
        for pid in pids:
            _signal_group(pid, signal.SIGTERM)
        if pids:
            killer = threading.Timer(self.kill_grace_s, self._kill_left)
            killer.daemon = True
            killer.start()

    def _kill_left(self) -> None:
        with self._procs_lock:
            pids = list(self._procs)
        for pid in pids:
            _signal_group(pid, signal.SIGKILL)

    def _sla_fire(self) -> None:
        sla = self.wf.sla
        self._sla_missed = True
        self._say(f"digdag local: SLA missed for {self.wf.name} ({sla.kind})")
        log.warning("sla missed", extra={"workflow": self.wf.name, "attempt_id": self.attempt_id})
        if sla.fail:
            self._sla_failed = True
        if sla.task is not None:
            scope = _merge_scope(dict(self.params), self.wf.root.export, self.wf.root)
            try:
                self._run(sla.task, scope)
            except TaskFailed as e:
                log.error("sla task failed", extra={"task": e.task, "error": redact(e.message)})

    # -- tasks ---------------------------------------------------------------------------------------------------

    def _run(self, task: Task, scope: dict) -> None:
        if self._stop.is_set():  # nothing new starts once the attempt is stopping
            raise TaskFailed(f"attempt stopped by {self._stopped_by}", task.full_name)
        scope = _merge_scope(scope, task.export, task)
        rec = self._record(task)
        retries = 0
        while True:
            try:
                if task.operator is not None and task.operator != "call":
                    self._operate(task, scope, rec)
                else:
                    self._children(task, scope)
                self._finish(rec, "success")
                return
            except TaskFailed as e:
                if self._stop.is_set():  # stopped: no retry, no _error (as Digdag after a kill)
                    self._finish(rec, "error", f"{e.message} (attempt stopped by {self._stopped_by})")
                    with self._lock:
                        if self._first_failure is None:
                            self._first_failure = e
                    raise
                if task.retry is not None and retries < task.retry.limit:
                    wait = task.retry.delay(retries)
                    retries += 1
                    rec.retries = retries
                    self._say(
                        f"{task.full_name}: failed ({redact(e.message)}); retry {retries}/{task.retry.limit}"
                        + (f" in {wait:g}s" if wait else "")
                    )
                    log.warning("task retrying", extra={"task": task.full_name, "retry": retries})
                    self._write_record(done=False)
                    if wait:
                        self.sleep(wait)
                    continue
                self._finish(rec, "error", e.message)
                with self._lock:
                    if self._first_failure is None:
                        self._first_failure = e
                if task.error is not None:
                    err_scope = dict(scope)
                    err_scope["error"] = {"message": e.message, "stacktrace": "", "task": e.task}
                    try:
                        self._run(task.error, err_scope)
                    except TaskFailed as inner:
                        log.error(
                            "error task failed", extra={"task": inner.task, "error": redact(inner.message)}
                        )
                raise

    def _children(self, task: Task, scope: dict) -> None:
        if not task.parallel or len(task.children) <= 1:
            for child in task.children:
                self._run(child, scope)
            return
        stop = threading.Event()
        failures: list[TaskFailed] = []

        def one(child: Task) -> None:
            if stop.is_set() or self._stop.is_set():
                self._finish(self._record(child), "skipped")
                return
            try:
                self._run(child, scope)
            except TaskFailed as e:
                stop.set()
                failures.append(e)

        with ThreadPoolExecutor(
            max_workers=task.parallel_limit or len(task.children), thread_name_prefix="digdag-task"
        ) as pool:
            for f in [pool.submit(one, c) for c in task.children]:
                f.result()
        if failures:
            raise failures[0]

    def _params_for(self, task: Task, scope: dict) -> dict:
        params = dict(scope)
        try:
            params.update(render(copy.deepcopy(task.params), params))
        except UndefinedVariable as e:
            raise WorkflowError(
                f"${{{e.name}}} is not defined", file=task.file, task=task.full_name
            ) from None
        params.update(self.builtins)
        params["task_name"] = task.full_name
        return params

    def _secret(self, key: str) -> str:
        value = self.environ.get(secret_env_name(key), "")
        if value:
            with self._lock:
                self._secret_values.add(value)
        return value

    def _operate(self, task: Task, scope: dict, rec: TaskRecord) -> None:
        params = self._params_for(task, scope)
        try:
            command = render(task.command, params)
        except UndefinedVariable as e:
            raise TaskFailed(f"${{{e.name}}} is not defined ({task.file.name})", task.full_name) from None
        if task.operator == "echo":
            self._say(f"{task.full_name}: echo>: {command}")
            self._emit(rec, format_value(command) + "\n")
        elif task.operator == "fail":
            self._say(f"{task.full_name}: fail>: {command}")
            raise TaskFailed(format_value(command), task.full_name)
        elif task.operator == "sh":
            self._sh(task, command, params, rec)

    def _sh(self, task: Task, command: str, params: dict, rec: TaskRecord) -> None:
        env = dict(self.environ)
        venv_bin = str(Path(sys.executable).parent)
        env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
        env["RECO_HOME"] = str(reco_home())
        for key, value in params.items():
            if is_env_key(key) and isinstance(value, (str, int, float, bool)):
                env[key] = format_value(value)
        try:
            extra = render({**(params.get("_env") or {}), **task.env}, params, self._secret)
        except UndefinedVariable as e:
            raise TaskFailed(f"_env: ${{{e.name}}} is not defined", task.full_name) from None
        env.update({k: format_value(v) for k, v in extra.items()})
        self._say(f"{task.full_name}: sh>: {self._mask(command)}")
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        args = reco_args(command) if spawn_mode() == "fork" else None
        if args is not None:  # a plain `reco ...` line: in a fork of this process (batch.prefork)
            preload(args)
            proc = ForkedReco(args, env, cwd=task.workdir, new_session=True, merge_stderr=True)
        else:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", command],
                cwd=task.workdir,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                bufsize=1,
                start_new_session=True,  # its own process group: stopping the attempt reaches all it started
            )
        with self._procs_lock:
            self._procs[proc.pid] = proc
        if self._stop.is_set():  # stopped while it was starting
            _signal_group(proc.pid, signal.SIGTERM)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                masked = self._mask(line)
                tail.append(masked.rstrip("\n"))
                self._emit(rec, masked)
            rc = proc.wait()
        except BaseException:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            with self._procs_lock:
                self._procs.pop(proc.pid, None)
        rec.tail = list(tail)
        if rc != 0:
            raise TaskFailed(f"Command failed with code {rc}", task.full_name, list(tail))

    # -- output and records --------------------------------------------------------------------------------------

    def _mask(self, text: str) -> str:
        for value in self._secret_values:
            if len(value) >= 4:
                text = text.replace(value, "***")
        return redact(text)

    def _say(self, line: str) -> None:
        stamp = datetime.now().strftime("%H:%M:%S")
        with self._lock:
            self.out.write(f"{stamp} {self._mask(line)}\n")
            self.out.flush()

    def _emit(self, rec: TaskRecord, text: str) -> None:
        with self._lock:
            self.out.write(text)
            self.out.flush()
            rec.tail = (rec.tail + [text.rstrip("\n")])[-TAIL_LINES:]

    def _record(self, task: Task) -> TaskRecord:
        rec = TaskRecord(task.full_name, startedAt=_now(), isGroup=task.is_group)
        with self._lock:
            self._records.append(rec)
        return rec

    def _finish(self, rec: TaskRecord, state: str, error: str | None = None) -> None:
        rec.state, rec.finishedAt = state, _now()
        rec.error = self._mask(error) if error else None
        self._write_record(done=False)

    def _write_record(self, *, done: bool, success: bool | None = None) -> None:
        with self._lock:
            data = {
                "id": self.attempt_id,
                "workflow": {"name": self.wf.name},
                "sessionTime": self.builtins["session_time"],
                "retryAttemptName": self.retry_attempt_name or None,
                "done": done,
                "success": bool(success),
                "params": {k: v for k, v in self.params.items() if isinstance(v, (str, int, float, bool))},
                "slaMissed": self._sla_missed,
                "stoppedBy": self._stopped_by,
                "tasks": [asdict(r) for r in self._records],
            }
            tmp = self.record_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=1))
            os.replace(tmp, self.record_path)


def _signal_group(pid: int, signum: int) -> None:
    """Signal the process group led by ``pid`` (a task's shell); gone already is fine."""
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def run_workflow(
    path: str | Path,
    session_date: date,
    params: dict[str, Any] | None = None,
    *,
    out: TextIO | None = None,
    sleep=None,
    environ: dict[str, str] | None = None,
    retry_attempt_name: str = "",
    kill_grace_s: float = 10.0,
) -> AttemptResult:
    """Parse ``path`` (and what it calls) and run it for one session date; never raises for a task failure."""
    wf = load_workflow(path)
    return LocalRunner(
        wf,
        session_date,
        params,
        out=out,
        sleep=sleep,
        environ=environ,
        retry_attempt_name=retry_attempt_name,
        kill_grace_s=kill_grace_s,
    ).run()
