"""The GKE runner: create the step's Job, wait for it, stream its pods' logs, report the outcome in one line.

- The Job's name is deterministic (pipeline, step, date, attempt): a Digdag retry of the same attempt finds the Job
  it made before. A running or succeeded Job is adopted (never a second one); a failed one is deleted and made
  again under the same name, so that a retry really runs the step again.
- Waiting is a watch on the Job (field selector on its name) that reconnects on timeouts, dropped connections and
  410 Gone (re-reading the Job for a fresh resourceVersion); between watch events the pods are checked for the
  failures a Job's status never shows: image pull errors and pods unschedulable for longer than
  ``kubernetes.unschedulable_timeout_s``. In those two cases the Job is deleted: it would never start.
- On SIGTERM (Digdag killing the task) the Job is deleted (propagationPolicy Background) and the command exits.

Status and pods are read as the API's JSON (camelCase dicts), so the diagnosis works on the documented shapes.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

from batch.config import EnvironmentConfig
from batch.errors import ConfigError
from batch.logs import redact
from batch.runners import manifests
from batch.runners.base import Runner, StepFailed, StepRun, one_line, summarize_log_lines

log = logging.getLogger("reco.runners.gke")

IMAGE_PULL_REASONS = ("ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull")
TAIL = 50


class Terminated(BaseException):
    """Raised in the main thread by the SIGTERM handler; BaseException so that no `except Exception` eats it."""


def _cond(obj: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype and c.get("status") == "True":
            return c
    return None


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _container_statuses(pod: dict[str, Any]) -> list[dict[str, Any]]:
    status = pod.get("status") or {}
    return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]


def _terminations(pod: dict[str, Any]) -> list[dict[str, Any]]:
    """Terminated states of the pod's containers, current and previous."""
    out = []
    for cs in _container_statuses(pod):
        for key in ("state", "lastState"):
            term = (cs.get(key) or {}).get("terminated")
            if term:
                out.append({**term, "container": cs.get("name")})
    return out


def _index(pod: dict[str, Any]) -> int | None:
    meta = pod.get("metadata") or {}
    raw = (meta.get("annotations") or {}).get("batch.kubernetes.io/job-completion-index")
    raw = raw or (meta.get("labels") or {}).get("batch.kubernetes.io/job-completion-index")
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def _pod_sort_key(pod: dict[str, Any]) -> str:
    return (pod.get("metadata") or {}).get("creationTimestamp") or ""


def _memory_limit(job: dict[str, Any], container: str | None) -> str:
    try:
        for c in job["spec"]["template"]["spec"]["containers"]:
            if container in (None, c.get("name")):
                return ((c.get("resources") or {}).get("limits") or {}).get("memory") or "unset"
    except (KeyError, TypeError):
        pass
    return "unset"


def parse_indexes(text: str | None) -> list[int]:
    """The API's compressed index list ("1,3-5") as integers."""
    out: list[int] = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def diagnose(job: dict[str, Any], pods: list[dict[str, Any]], tail_of) -> StepFailed:
    """The one-line failure of a failed Job. ``tail_of(pod_name)`` returns its last log lines (a list)."""
    name = job["metadata"]["name"]
    spec = job.get("spec") or {}
    status = job.get("status") or {}
    cond = _cond(job, "Failed") or _cond(job, "FailureTarget") or {}
    reason = cond.get("reason") or "Failed"
    pods = sorted(pods, key=_pod_sort_key)

    def tail(pod: dict[str, Any] | None) -> str:
        if pod is None:
            return "no pod left to read logs from"
        text = summarize_log_lines(list(tail_of(pod["metadata"]["name"])))
        return redact(text) or "no log output"

    failed_pods = [(p, t) for p in pods for t in _terminations(p) if t.get("exitCode", 0) != 0]

    if reason == "DeadlineExceeded":
        last = pods[-1] if pods else None
        return StepFailed(
            "DeadlineExceeded",
            one_line(
                f"DeadlineExceeded: Job {name} ran longer than activeDeadlineSeconds="
                f"{spec.get('activeDeadlineSeconds')}; last log lines: {tail(last)}"
            ),
        )

    oom = [(p, t) for p, t in failed_pods if t.get("reason") == "OOMKilled"]
    if oom:
        pod, term = oom[-1]
        return StepFailed(
            "OOMKilled",
            one_line(
                f"OOMKilled: Job {name} pod {pod['metadata']['name']} exceeded its memory limit "
                f"({_memory_limit(job, term.get('container'))}); give the step more memory (its resource class or "
                f"an overlay patch)"
            ),
        )

    if reason in ("FailedIndexes", "MaxFailedIndexesExceeded") or status.get("failedIndexes"):
        indexes = parse_indexes(status.get("failedIndexes"))
        first = indexes[0] if indexes else None
        candidates = [(p, t) for p, t in failed_pods if first is None or _index(p) == first]
        pod, term = candidates[-1] if candidates else (None, {})
        code = term.get("exitCode")
        shown = ",".join(map(str, indexes)) or "?"
        return StepFailed(
            "FailedIndexes",
            one_line(
                f"failed indexes {shown} of {spec.get('completions')}: Job {name} index {first} exited with code "
                f"{code}: {tail(pod)}"
            ),
            exit_code=code,
        )

    pod, term = failed_pods[-1] if failed_pods else (None, {})
    code = term.get("exitCode")
    if reason == "BackoffLimitExceeded":
        return StepFailed(
            "BackoffLimitExceeded",
            one_line(
                f"BackoffLimitExceeded: Job {name} failed {status.get('failed', 0)} times (backoffLimit "
                f"{spec.get('backoffLimit')}); last exit code {code}: {tail(pod)}"
            ),
            exit_code=code,
        )
    if code is not None:
        why = "not retried: pod failure policy" if reason == "PodFailurePolicy" else reason
        return StepFailed(
            "ExitCode", one_line(f"exit code {code} ({why}): Job {name}: {tail(pod)}"), exit_code=code
        )
    return StepFailed(reason, one_line(f"{reason}: Job {name} failed: {cond.get('message') or 'no message'}"))


def pending_problem(
    job: dict[str, Any],
    pods: list[dict[str, Any]],
    timeout_s: int,
    now: datetime | None = None,
    first_seen: dict[str, float] | None = None,
    mono: float | None = None,
) -> StepFailed | None:
    """A pod that will not start: an image pull failure, or unschedulable for longer than ``timeout_s``."""
    name = job["metadata"]["name"]
    now = now or datetime.now(UTC)
    for pod in pods:
        pname = pod["metadata"]["name"]
        for cs in _container_statuses(pod):
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in IMAGE_PULL_REASONS:
                return StepFailed(
                    waiting["reason"],
                    one_line(
                        f"{waiting['reason']}: Job {name} pod {pname} cannot pull image {cs.get('image')}: "
                        f"{waiting.get('message') or 'no message'}"
                    ),
                )
        if (pod.get("status") or {}).get("phase") != "Pending":
            continue
        for c in (pod.get("status") or {}).get("conditions") or []:
            if (
                c.get("type") == "PodScheduled"
                and c.get("status") == "False"
                and c.get("reason") == "Unschedulable"
            ):
                since = _parse_time(c.get("lastTransitionTime"))
                if since is not None:
                    waited = (now - since).total_seconds()
                elif first_seen is not None and mono is not None:
                    waited = mono - first_seen.setdefault(pname, mono)
                else:
                    waited = 0.0
                if waited > timeout_s:
                    return StepFailed(
                        "Unschedulable",
                        one_line(
                            f"Unschedulable for {int(waited)}s (limit {timeout_s}s): Job {name} pod {pname}: "
                            f"{c.get('message') or 'no message'}"
                        ),
                    )
    return None


class _LogStreams:
    """One thread per pod following its log; lines go to stdout (redacted) and a tail per pod."""

    def __init__(self, core, namespace: str, container: str, out=None):
        self.core = core
        self.namespace = namespace
        self.container = container
        self.out = out or sys.stdout
        self.tails: dict[str, deque[str]] = {}
        self.threads: dict[str, threading.Thread] = {}
        self.lock = threading.Lock()

    def ensure(self, pod: dict[str, Any]) -> None:
        pname = pod["metadata"]["name"]
        if pname in self.threads:
            return
        started = any(
            ((cs.get("state") or {}).get("running") or (cs.get("state") or {}).get("terminated"))
            for cs in (pod.get("status") or {}).get("containerStatuses") or []
        )
        if not started:
            return
        self.tails[pname] = deque(maxlen=TAIL)
        prefix = f"[{_index(pod)}] " if _index(pod) is not None else ""
        t = threading.Thread(target=self._follow, args=(pname, prefix), daemon=True, name=f"log-{pname}")
        self.threads[pname] = t
        t.start()

    def _follow(self, pname: str, prefix: str) -> None:
        try:
            resp = self.core.read_namespaced_pod_log(
                pname, self.namespace, container=self.container, follow=True, _preload_content=False
            )
            buf = b""
            for chunk in resp.stream(4096):
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for raw in lines:
                    self._emit(pname, prefix, raw.decode("utf-8", "replace"))
            if buf:
                self._emit(pname, prefix, buf.decode("utf-8", "replace"))
            resp.release_conn()
        except Exception as e:  # a lost log stream must not fail the run; the tail is re-read on failure
            log.warning("log stream of pod %s ended: %s", pname, redact(str(e)))

    def _emit(self, pname: str, prefix: str, line: str) -> None:
        self.tails[pname].append(line)
        with self.lock:
            self.out.write(prefix + redact(line) + "\n")
            self.out.flush()

    def tail(self, pname: str) -> list[str]:
        thread = self.threads.get(pname)
        if thread is not None:
            thread.join(timeout=5)
        lines = list(self.tails.get(pname) or [])
        if lines:
            return lines
        try:  # never streamed (or the stream broke): ask for the tail directly
            text = self.core.read_namespaced_pod_log(
                pname, self.namespace, container=self.container, tail_lines=20
            )
            return str(text).splitlines()
        except Exception as e:
            log.warning("cannot read the log of pod %s: %s", pname, redact(str(e)))
            return []

    def join(self, timeout: float = 10) -> None:
        for t in list(self.threads.values()):
            t.join(timeout=timeout)


class GkeRunner(Runner):
    def __init__(
        self,
        env: EnvironmentConfig,
        *,
        api_client=None,
        watch_timeout_s: int = 30,
        reconnect_delay_s: float = 2.0,
        delete_wait_s: float = 120.0,
        out=None,
    ):
        self.env = env
        self.namespace = env.kubernetes.namespace
        self._api_client = api_client
        self.watch_timeout_s = watch_timeout_s
        self.reconnect_delay_s = reconnect_delay_s
        self.delete_wait_s = delete_wait_s
        self.out = out

    # -- API access ---------------------------------------------------------------------------------------

    def api_client(self):
        if self._api_client is None:
            from kubernetes import client, config

            if os.environ.get("KUBERNETES_SERVICE_HOST"):
                config.load_incluster_config()
            else:
                try:
                    config.load_kube_config(context=self.env.kubernetes.context)
                except Exception as e:
                    raise ConfigError(
                        f"no Kubernetes credentials for env {self.env.name}: {e}",
                        hint="gcloud container clusters get-credentials CLUSTER",
                    ) from None
            self._api_client = client.ApiClient()
        return self._api_client

    def _apis(self):
        from kubernetes import client

        api = self.api_client()
        return client.BatchV1Api(api), client.CoreV1Api(api)

    def _json(self, obj) -> dict[str, Any]:
        return self.api_client().sanitize_for_serialization(obj)

    # -- the run ------------------------------------------------------------------------------------------

    def build(self, run: StepRun) -> dict[str, Any]:
        docs = manifests.render_overlay(self.env.kubernetes.overlay)
        return manifests.build_job(docs, run, self.namespace)

    def run(self, run: StepRun) -> None:
        self.run_job(self.build(run))

    def run_job(self, job: dict[str, Any]) -> None:
        name = job["metadata"]["name"]
        previous = None
        in_main = threading.current_thread() is threading.main_thread()
        if in_main:
            previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        try:
            self.submit(job)
            self.wait(job)
        except Terminated:
            self.delete(name)
            raise StepFailed(
                "Terminated", f"terminated by SIGTERM: deleted Job {name} in {self.namespace}", exit_code=143
            ) from None
        finally:
            if in_main:
                signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)

    @staticmethod
    def _on_sigterm(signum, frame):
        raise Terminated()

    def submit(self, job: dict[str, Any]) -> None:
        """Create the Job, or adopt the one this attempt already made."""
        from kubernetes.client.rest import ApiException

        batch, _ = self._apis()
        name = job["metadata"]["name"]
        existing = self.read_job(name)
        if existing is not None:
            if _cond(existing, "Failed") or _cond(existing, "FailureTarget"):
                log.info(
                    "Job %s exists and has failed: deleting it to run the step again",
                    name,
                    extra={"job": name},
                )
                self.delete(name, wait=True)
            else:
                log.info(
                    "Job %s exists: adopting it (a retry of the same attempt)", name, extra={"job": name}
                )
                return
        try:
            batch.create_namespaced_job(self.namespace, job)
            log.info("created Job %s in %s", name, self.namespace, extra={"job": name})
        except ApiException as e:
            if e.status == 409:
                log.info("Job %s was created meanwhile: adopting it", name, extra={"job": name})
                return
            raise StepFailed(
                "ApiError", one_line(f"cannot create Job {name}: {e.status} {e.reason}: {_api_message(e)}")
            ) from None

    def read_job(self, name: str) -> dict[str, Any] | None:
        from kubernetes.client.rest import ApiException

        batch, _ = self._apis()
        try:
            return self._json(batch.read_namespaced_job(name, self.namespace))
        except ApiException as e:
            if e.status == 404:
                return None
            raise StepFailed("ApiError", one_line(f"cannot read Job {name}: {e.status} {e.reason}")) from None

    def list_pods(self, name: str) -> list[dict[str, Any]]:
        _, core = self._apis()
        pods = core.list_namespaced_pod(self.namespace, label_selector=f"batch.kubernetes.io/job-name={name}")
        return self._json(pods).get("items") or []

    def delete(self, name: str, wait: bool = False) -> None:
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        batch, _ = self._apis()
        try:
            batch.delete_namespaced_job(
                name, self.namespace, body=client.V1DeleteOptions(propagation_policy="Background")
            )
            log.info("deleted Job %s", name, extra={"job": name})
        except ApiException as e:
            if e.status != 404:
                log.error("cannot delete Job %s: %s %s", name, e.status, e.reason)
                return
        if wait:
            deadline = time.monotonic() + self.delete_wait_s
            while self.read_job(name) is not None:
                if time.monotonic() > deadline:
                    raise StepFailed(
                        "ApiError",
                        f"Job {name} is still there {self.delete_wait_s:.0f}s after "
                        f"deleting it; cannot run it again under the same name",
                    )
                time.sleep(0.5)

    def wait(self, job_manifest: dict[str, Any]) -> None:
        from kubernetes import watch
        from kubernetes.client.rest import ApiException
        from urllib3.exceptions import HTTPError

        name = job_manifest["metadata"]["name"]
        container = manifests.container_of(job_manifest)["name"]
        batch, core = self._apis()
        streams = _LogStreams(core, self.namespace, container, out=self.out)
        first_seen: dict[str, float] = {}
        timeout_s = self.env.kubernetes.unschedulable_timeout_s
        while True:
            job = self.read_job(name)
            if job is None:
                raise StepFailed("Deleted", f"Job {name} was deleted before it finished")
            if self._settled(job, streams, first_seen, timeout_s):
                return
            rv = (job.get("metadata") or {}).get("resourceVersion")
            try:
                w = watch.Watch()
                for event in w.stream(
                    batch.list_namespaced_job,
                    self.namespace,
                    field_selector=f"metadata.name={name}",
                    resource_version=rv,
                    timeout_seconds=self.watch_timeout_s,
                    # a connection that dies silently must not hang the wait forever
                    _request_timeout=self.watch_timeout_s + 30,
                ):
                    if event["type"] == "DELETED":
                        raise StepFailed("Deleted", f"Job {name} was deleted before it finished")
                    if event["type"] == "BOOKMARK":
                        continue
                    if self._settled(self._json(event["object"]), streams, first_seen, timeout_s):
                        return
            except ApiException as e:
                if e.status == 410:
                    log.info("watch of Job %s expired (410 Gone): re-reading it", name)
                    continue
                raise StepFailed(
                    "ApiError", one_line(f"watching Job {name} failed: {e.status} {e.reason}")
                ) from None
            except (HTTPError, ConnectionError, OSError) as e:
                log.warning("watch of Job %s dropped (%s): reconnecting", name, type(e).__name__)
                time.sleep(self.reconnect_delay_s)

    def _settled(
        self, job: dict[str, Any], streams: _LogStreams, first_seen: dict[str, float], timeout_s: int
    ) -> bool:
        """True when the Job succeeded; raises StepFailed when it failed or cannot start."""
        name = job["metadata"]["name"]
        pods = self.list_pods(name)
        for pod in pods:
            streams.ensure(pod)
        if _cond(job, "Complete") or _cond(job, "SuccessCriteriaMet"):
            streams.join()
            log.info("Job %s succeeded", name, extra={"job": name})
            return True
        if _cond(job, "Failed") or _cond(job, "FailureTarget"):
            raise diagnose(job, pods, streams.tail)
        problem = pending_problem(job, pods, timeout_s, first_seen=first_seen, mono=time.monotonic())
        if problem is not None:
            self.delete(name)
            raise problem
        return False


def _api_message(e) -> str:
    try:
        return json.loads(e.body).get("message", "")
    except (TypeError, ValueError, AttributeError):
        return ""
