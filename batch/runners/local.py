"""The local runner: run the rendered Job's container command here, as processes.

The Job is built exactly as for GKE (same overlay, same template, same args); then container-only settings are
mapped to this machine:

- the command `reco` becomes this interpreter running batch.cli (the project as installed in this venv): in
  a fork of this process when it is a `reco submit` that ran no model code (it has already imported the step
  graph, so the child skips the ~1.3 s of imports a fresh interpreter pays; the same code, arguments,
  environment and exit code), else in a fresh interpreter as in the container (batch.prefork,
  RECO_LOCAL_SPAWN);
- RECO_CONFIG_DIR and RECO_HOME (the ConfigMap mount and the pod's /tmp) become the local config directory and
  local state directory; variables already set in this shell win over the manifest's other values, so a
  developer's GCP_PROJECT or RECO_LOG_FORMAT is kept;
- env values from ConfigMaps are read from the rendered ConfigMaps; secrets and field refs are not resolved;
- an Indexed Job becomes `completions` processes with JOB_COMPLETION_INDEX = 0..N-1, `parallelism` at a time;
- activeDeadlineSeconds is enforced (DeadlineExceeded); there are no retries: a failed process fails the run;
- SIGTERM (Digdag killing the task) kills the step's processes and exits 143, as the GKE runner deletes its Job.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from typing import Any

from batch.alerts.sent import ATTEMPT_ENV
from batch.config import EnvironmentConfig, config_dir, reco_home
from batch.logs import redact
from batch.prefork import ForkedReco, preload, spawn_mode
from batch.runners import manifests
from batch.runners.base import (
    EXIT_TERMINATED,
    Runner,
    StepFailed,
    StepRun,
    Terminated,
    one_line,
    summarize_log_lines,
)

log = logging.getLogger("reco.runners.local")

PYTHON_RECO = [sys.executable, "-c", "import sys; from batch.cli import main; sys.exit(main())"]
TAIL = 50


class LocalRunner(Runner):
    def __init__(self, env: EnvironmentConfig, *, poll_s: float = 0.05):
        self.env = env
        self.poll_s = poll_s

    def build(self, run: StepRun) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        docs = manifests.render_overlay(self.env.kubernetes.overlay)
        return manifests.build_job(docs, run, self.env.kubernetes.namespace), docs

    def run(self, run: StepRun) -> None:
        job, docs = self.build(run)
        previous = None
        in_main = threading.current_thread() is threading.main_thread()
        if in_main:
            previous = signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            self.run_job(job, docs)
        except Terminated:  # run_job's `finally` has killed the step's processes
            raise StepFailed(
                "Terminated",
                f"terminated by SIGTERM: stopped Job {job['metadata']['name']} (local run)",
                exit_code=EXIT_TERMINATED,
            ) from None
        finally:
            if in_main:
                signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)

    # -- executing a built Job ----------------------------------------------------------------------------

    def process_env(self, job: dict[str, Any], docs: list[dict[str, Any]]) -> dict[str, str]:
        container = manifests.container_of(job)
        namespace = job["metadata"].get("namespace")
        from_manifest: dict[str, str] = {}
        for var in container.get("env") or []:
            value = var.get("value")
            ref = (var.get("valueFrom") or {}).get("configMapKeyRef")
            if value is None and ref:
                cm = manifests.find_config_map(docs, ref.get("name"), namespace)
                value = ((cm or {}).get("data") or {}).get(ref.get("key"))
            if value is None:
                log.debug("env %s is not resolvable locally; left unset", var.get("name"))
                continue
            from_manifest[var["name"]] = _expand(str(value), from_manifest)
        env = {**from_manifest, **os.environ}
        if ATTEMPT_ENV in from_manifest:  # this run's attempt, never one inherited from the calling shell
            env[ATTEMPT_ENV] = from_manifest[ATTEMPT_ENV]
        env["RECO_CONFIG_DIR"] = str(config_dir())
        env["RECO_HOME"] = str(reco_home())
        return env

    def command(self, job: dict[str, Any]) -> list[str]:
        container = manifests.container_of(job)
        command = list(container.get("command") or [])
        args = list(container.get("args") or [])
        if command[:1] == ["reco"]:
            command = PYTHON_RECO + command[1:]
        return command + args

    def run_job(self, job: dict[str, Any], docs: list[dict[str, Any]]) -> None:
        spec = job["spec"]
        name = job["metadata"]["name"]
        indexed = spec.get("completionMode") == "Indexed"
        completions = int(spec.get("completions") or 1)
        parallelism = max(1, int(spec.get("parallelism") or 1))
        deadline_s = spec.get("activeDeadlineSeconds")
        argv = self.command(job)
        fork = argv[: len(PYTHON_RECO)] == PYTHON_RECO and spawn_mode() == "fork"
        if fork:
            preload(argv[len(PYTHON_RECO) :])
        base_env = self.process_env(job, docs)
        log.info(
            "running Job %s locally: %s",
            name,
            " ".join(argv[3:] if argv[:3] == PYTHON_RECO else argv),
            extra={"job": name, "completions": completions, "parallelism": parallelism},
        )

        pending = list(range(completions))
        running: dict[int, _Proc] = {}
        failed: dict[int, _Proc] = {}
        started = time.monotonic()
        try:
            while pending or running:
                while pending and len(running) < parallelism and not failed:
                    index = pending.pop(0)
                    env = dict(base_env)
                    if indexed:
                        env["JOB_COMPLETION_INDEX"] = str(index)
                    label = f"{name}[{index}]" if indexed else name
                    running[index] = _Proc(_start(argv, env, fork), label)
                for index, proc in list(running.items()):
                    if proc.poll() is not None:
                        del running[index]
                        proc.finish()
                        if proc.returncode != 0:
                            failed[index] = proc
                if failed and not running:
                    break
                if deadline_s is not None and time.monotonic() - started > float(deadline_s):
                    for proc in running.values():
                        proc.kill()
                    raise StepFailed(
                        "DeadlineExceeded",
                        f"DeadlineExceeded: Job {name} ran longer than "
                        f"activeDeadlineSeconds={deadline_s} (local run)",
                    )
                time.sleep(self.poll_s)
        finally:
            for proc in running.values():
                proc.kill()
        if not failed:
            return
        if indexed:
            first = min(failed)
            proc = failed[first]
            raise StepFailed(
                "FailedIndexes",
                f"failed indexes {','.join(map(str, sorted(failed)))} of {completions}: Job {name} index {first} "
                f"exited with code {proc.returncode}: {_tail(proc)}",
                exit_code=proc.returncode,
            )
        proc = next(iter(failed.values()))
        raise StepFailed(
            "ExitCode",
            f"exit code {proc.returncode}: Job {name} failed: {_tail(proc)}",
            exit_code=proc.returncode,
        )


def _on_sigterm(signum, frame):
    raise Terminated()


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion from variables defined earlier in the container's env."""
    for key, val in env.items():
        value = value.replace(f"$({key})", val)
    return value


def _tail(proc: _Proc) -> str:
    return one_line(redact(summarize_log_lines(list(proc.tail)))) or "no output"


def _start(argv: list[str], env: dict[str, str], fork: bool) -> subprocess.Popen | ForkedReco:
    """The container's command as a fresh interpreter, or (``fork``) `reco ARGS` in a fork of this one."""
    if fork:
        return ForkedReco(argv[len(PYTHON_RECO) :], env)
    # Unbuffered like the container (its image sets PYTHONUNBUFFERED): progress shows as it happens.
    return subprocess.Popen(
        argv,
        env={"PYTHONUNBUFFERED": "1", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )


class _Proc:
    """A started process (subprocess.Popen or batch.prefork.ForkedReco) whose stdout/stderr are passed through
    (stdout to stdout, stderr to stderr) and tailed."""

    def __init__(self, process: subprocess.Popen | ForkedReco, label: str):
        self.process = process
        self.label = label
        self.tail: deque[str] = deque(maxlen=TAIL)
        self.threads = [
            threading.Thread(target=self._pump, args=(process.stdout, sys.stdout), daemon=True),
            threading.Thread(target=self._pump, args=(process.stderr, sys.stderr), daemon=True),
        ]
        for t in self.threads:
            t.start()

    def _pump(self, pipe, out) -> None:
        with pipe:
            for line in pipe:
                self.tail.append(line.rstrip("\n"))
                out.write(redact(line))
                out.flush()

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def poll(self) -> int | None:
        return self.process.poll()

    def finish(self) -> None:
        for t in self.threads:
            t.join(timeout=5)

    def kill(self) -> None:
        if self.poll() is None:
            self.process.kill()
            self.process.wait()
        self.finish()
