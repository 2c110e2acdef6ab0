"""Run locks: one run of a pipeline and session date at a time, on local files and on ``gs://``.

A lock is one small JSON object at ``<artifact root>/<pipeline>/_locks/dt=<YYYY-MM-DD>.lock`` holding who holds it
(owner id, host, pid, since) and until when (``expires_at``, Unix seconds). Taking it is one atomic create that
fails when the object exists:

* local files: ``open(O_CREAT | O_EXCL)``;
* GCS: an upload with the precondition ``ifGenerationMatch=0`` (google-cloud-storage), which GCS refuses with
  412 when any generation of the object exists. Refreshing and deleting carry ``ifGenerationMatch=<ours>``, so a
  holder never overwrites or deletes a lock that someone else has taken over.
* any other fsspec URL (memory://, tests): exists-then-write, atomic only inside one process.

While held, a heartbeat thread pushes ``expires_at`` forward every ``ttl_s / 3`` seconds. A holder that died
(kill -9, a preempted node) stops the heartbeat, so its lock expires ``ttl_s`` after the last beat and the next
run takes it over. On the same host a lock whose pid is gone is taken over at once. Clocks: expiry compares the
holder's clock with the reader's; keep ``ttl_s`` well above any clock skew (default 300 s).

Taking over an expired lock is itself guarded: locally the stale file is renamed away (only one renamer wins)
and checked to be the one that was judged stale; on GCS it is deleted with ``ifGenerationMatch`` of the stale
generation.

A write whose answer was lost (the GCS client retries it, and the retry meets the object the first try wrote: 412)
is recognised by the owner id in the object, so the run neither refuses itself nor drops its lock. Cloud Storage
errors other than 404/412 are LockStorageError, naming the lock and the answer.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import posixpath
import socket
import threading
import time
import uuid
from datetime import UTC, date, datetime

import fsspec

from batch.errors import AlreadyRunningError, LockStorageError

log = logging.getLogger(__name__)

DEFAULT_TTL_S = 300.0


def run_lock_url(artifact_root: str, pipeline: str, dt: date) -> str:
    return posixpath.join(artifact_root.rstrip("/"), pipeline, "_locks", f"dt={dt.isoformat()}.lock")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _parse(data: bytes) -> dict:
    """A lock object's content; {} when unreadable (a writer died between create and write)."""
    try:
        info = json.loads(data)
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- backends: create-if-absent, read with a version token, conditional replace and delete ----------------------


class _LocalBackend:
    def __init__(self, path: str):
        self.path = os.path.abspath(path)

    def create(self, data: bytes):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return None
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return self._token()

    def _token(self):
        st = os.stat(self.path)
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def read(self):
        try:
            with open(self.path, "rb") as f:
                data = f.read()
            return data, self._token()
        except FileNotFoundError:
            return None, None

    def replace(self, data: bytes, token):
        """Renew our own lock: write a new file beside it and rename it over the lock. Readers see the old or the
        new content, never a half-written file (a rewrite in place showed an empty lock to a reader between truncate
        and write), and the path never stops existing, so a concurrent O_EXCL create still fails. Each renewal is a
        new inode: a breaker that judged the lock stale before the renewal sees the inode changed and puts it back
        (see delete)."""
        try:
            if self._token()[0] != token[0]:
                return None
        except FileNotFoundError:
            return None
        fresh = f"{self.path}.renew-{uuid.uuid4().hex[:8]}"
        try:
            with open(fresh, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
                st = os.fstat(f.fileno())
            os.replace(fresh, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(fresh)
            raise
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def delete(self, token) -> bool:
        aside = f"{self.path}.gone-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(self.path, aside)  # atomic: of two breakers only one gets the file
        except FileNotFoundError:
            return False
        st = os.stat(aside)
        if st.st_ino != token[0]:  # not the lock we judged: someone took it meanwhile; put it back
            try:
                os.link(aside, self.path)
            except FileExistsError:
                log.warning("run lock %s changed hands while being cleared", self.path)
            os.unlink(aside)
            return False
        os.unlink(aside)
        return True


class _GCSBackend:
    """One object; its generation is the version token. Each call uses a fresh Blob: the heartbeat thread and the
    caller's thread never share one Blob's properties."""

    def __init__(self, url: str):
        from google.api_core import exceptions  # heavy, and only for gs:// artifact roots
        from google.cloud import storage

        self.url = url
        bucket, _, self.name = url.removeprefix("gs://").partition("/")
        self._exceptions = exceptions
        self.bucket = storage.Client().bucket(bucket)

    @contextlib.contextmanager
    def _answer(self, doing: str):
        """Cloud Storage errors other than the expected 404/412, as a RecoError naming the lock and the answer."""
        try:
            yield
        except (self._exceptions.PreconditionFailed, self._exceptions.NotFound):
            raise
        except self._exceptions.GoogleAPICallError as e:
            reason, message = _error_of(e)
            raise LockStorageError(
                f"could not {doing} the run lock {self.url}: Cloud Storage answered {e.code}"
                + (f" {reason}" if reason else "")
                + f": {message}",
                hint=_hint_for(e.code),
            ) from e
        except self._exceptions.GoogleAPIError as e:  # RetryError: retried until the client's deadline
            raise LockStorageError(
                f"could not {doing} the run lock {self.url}: {e}", hint=_hint_for(None)
            ) from e

    def create(self, data: bytes):
        blob = self.bucket.blob(self.name)
        try:
            with self._answer("create"):
                blob.upload_from_string(data, content_type="application/json", if_generation_match=0)
        except self._exceptions.PreconditionFailed:
            return None
        except self._exceptions.NotFound as e:  # on an upload only the bucket can be missing
            raise LockStorageError(
                f"could not create the run lock {self.url}: Cloud Storage answered 404: {_error_of(e)[1]}",
                hint="check the bucket of the artifact root (artifact_root in config/environments.yaml)",
            ) from e
        return blob.generation

    def read(self):
        blob = self.bucket.blob(self.name)
        try:
            with self._answer("read"):
                blob.reload()
                data = blob.download_as_bytes(if_generation_match=blob.generation)
        except (self._exceptions.NotFound, self._exceptions.PreconditionFailed):
            return None, None
        return data, blob.generation

    def replace(self, data: bytes, token):
        blob = self.bucket.blob(self.name)
        try:
            with self._answer("renew"):
                blob.upload_from_string(data, content_type="application/json", if_generation_match=token)
        except (self._exceptions.PreconditionFailed, self._exceptions.NotFound):
            return None
        return blob.generation

    def delete(self, token) -> bool:
        blob = self.bucket.blob(self.name)
        try:
            with self._answer("delete"):
                blob.delete(if_generation_match=token)
        except (self._exceptions.PreconditionFailed, self._exceptions.NotFound):
            return False
        return True


def _error_of(e) -> tuple[str, str]:
    """(reason, message) of a Cloud Storage error answer. Upload errors come without the parsed body (their
    message is the raw answer), so the documented ``{"error": {"message", "errors": [{"reason"}]}}`` is read from
    the response when there is one."""
    body: dict = {}
    with contextlib.suppress(ValueError, AttributeError):
        body = e.response.json().get("error") or {}
    details = list(e.errors or body.get("errors") or [])
    reason = next((d["reason"] for d in details if isinstance(d, dict) and d.get("reason")), "")
    return reason, body.get("message") or e.message


def _hint_for(code: int | None) -> str:
    if code in (401, 403):
        return "the account running reco needs storage.objects.get, create and delete on the artifact bucket"
    return "Cloud Storage did not answer in time or failed; run again later"


class _FsspecBackend:
    """Best effort for other filesystems (memory:// in tests): not atomic across processes."""

    def __init__(self, url: str):
        self.fs, self.path = fsspec.core.url_to_fs(url)
        self._lock = threading.Lock()

    def create(self, data: bytes):
        with self._lock:
            if self.fs.exists(self.path):
                return None
            self.fs.pipe_file(self.path, data)
            return data

    def read(self):
        try:
            data = self.fs.cat_file(self.path)
        except FileNotFoundError:
            return None, None
        return data, data

    def replace(self, data: bytes, token):
        with self._lock:
            current, _ = self.read()
            if current != token:
                return None
            self.fs.pipe_file(self.path, data)
            return data

    def delete(self, token) -> bool:
        with self._lock:
            current, _ = self.read()
            if current != token:
                return False
            self.fs.rm(self.path)
            return True


def _backend(url: str):
    if url.startswith("gs://"):
        return _GCSBackend(url)
    if "://" not in url or url.startswith("file://"):
        return _LocalBackend(url.removeprefix("file://"))
    return _FsspecBackend(url)


# -- the lock ----------------------------------------------------------------------------------------------------


class RunLock:
    """A lock object with an expiry and a heartbeat. ``with RunLock(url).acquire(timeout_s=60): ...``"""

    def __init__(self, url: str, *, ttl_s: float = DEFAULT_TTL_S, what: str | None = None):
        self.url = url
        self.ttl_s = float(ttl_s)
        self.what = what or url
        self.owner = uuid.uuid4().hex
        self.info: dict = {}
        self._backend = _backend(url)
        self._token = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self.lost = False

    def _payload(self, since: str) -> bytes:
        self.info = {
            "owner": self.owner,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": since,
            "expires_at": time.time() + self.ttl_s,
            "what": self.what,
        }
        return json.dumps(self.info, sort_keys=True).encode()

    def holder(self) -> dict | None:
        """What the lock object says now (None when free or unreadable)."""
        data, _ = self._backend.read()
        return None if data is None else _parse(data)

    def _token_if_ours(self):
        """The lock object's token when it is ours. A write can take effect with its answer lost: the client then
        retries it, and the retry is refused (412) by the object the first try wrote. Only this holder writes its
        owner id, so an object carrying it is ours."""
        data, token = self._backend.read()
        if data is None or _parse(data).get("owner") != self.owner:
            return None
        return token

    def _stale(self, info: dict) -> bool:
        if not info:  # unreadable (a writer died between create and write): judge by age alone
            return False
        if time.time() > float(info.get("expires_at", 0)):
            return True
        return info.get("host") == socket.gethostname() and not _pid_alive(int(info.get("pid", -1)))

    def try_acquire(self) -> bool:
        token = self._backend.create(self._payload(_iso(time.time())))
        if token is not None:
            self._token = token
            self._start_heartbeat()
            return True
        data, token = self._backend.read()
        if data is None:  # released between our create and read: try again at once
            return self.try_acquire_once_more()
        info = _parse(data)
        if info.get("owner") == self.owner:  # our own create, its answer lost (see _token_if_ours)
            self._token = token
            self._start_heartbeat()
            return True
        if self._stale(info):
            log.warning(
                "taking over an expired run lock",
                extra={"lock": self.url, "holder": info.get("owner"), "host": info.get("host")},
            )
            self._backend.delete(token)
            return self.try_acquire_once_more()
        return False

    def try_acquire_once_more(self) -> bool:
        token = self._backend.create(self._payload(_iso(time.time())))
        if token is None:
            return False
        self._token = token
        self._start_heartbeat()
        return True

    def acquire(self, timeout_s: float = 0.0, poll_s: float = 1.0) -> RunLock:
        """Take the lock, waiting up to ``timeout_s``; AlreadyRunningError (exit 75) when it stays taken."""
        deadline = time.monotonic() + max(timeout_s, 0.0)
        announced = False
        while True:
            if self.try_acquire():
                return self
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._already_running()
            if not announced:
                log.info("waiting for the run lock", extra={"lock": self.url, "timeout_s": timeout_s})
                announced = True
            time.sleep(min(poll_s, remaining))

    def _already_running(self) -> AlreadyRunningError:
        info = self.holder() or {}
        who = (
            f"held by pid {info.get('pid')} on {info.get('host')} since {info.get('since')}, "
            f"expires {_iso(float(info['expires_at']))} unless renewed"
            if "expires_at" in info
            else "held"
        )
        return AlreadyRunningError(
            f"{self.what} is already running: lock {self.url} {who}",
            hint="wait for it to finish, or pass --lock-timeout SECONDS to wait; a crashed run's lock "
            "expires by itself",
        )

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name="run-lock-heartbeat", daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        since = self.info.get("since", _iso(time.time()))
        while not self._stop.wait(self.ttl_s / 3):
            # A renewal that fails leaves the lock held until it expires: try again at the next beat.
            try:
                token = self._backend.replace(self._payload(since), self._token) or self._token_if_ours()
            except (LockStorageError, OSError) as e:
                log.warning("could not renew the run lock", extra={"lock": self.url, "error": str(e)})
                continue
            if token is None:
                self.lost = True
                log.error("lost the run lock (taken over after it expired)", extra={"lock": self.url})
                return
            self._token = token

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
            self._beat = None
        if self._token is not None and not self.lost:
            try:
                self._backend.delete(self._token)
            except Exception as e:  # noqa: BLE001 - an undeleted lock is released by its expiry anyway
                log.warning("could not delete the run lock", extra={"lock": self.url, "error": str(e)})
        self._token = None

    def __enter__(self) -> RunLock:
        if self._token is None:
            self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def publish_lock_url(artifact_root: str, pipeline: str) -> str:
    """The lock that publish and rollback of one pipeline take around moving what is in service (any date)."""
    return posixpath.join(artifact_root.rstrip("/"), pipeline, "_locks", "publish.lock")
