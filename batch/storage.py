"""Artifacts on fsspec URLs (a local path here, ``gs://`` in the cloud): date-partitioned, atomic, re-runnable.

Layout under the artifact root::

    <root>/<pipeline>/<dataset>/dt=<YYYY-MM-DD>[/shard=<i>-of-<n>]/
        run=<run_id>/<files>          one directory per attempt at writing this partition
        _COMMITTED.json               the commit marker: which run holds the partition, its files and metadata
    <root>/<pipeline>/published/SERVING.json     THE commit point: the publish, the model and the warehouse
                                                 state in service, in one record (written last, atomically)
    <root>/<pipeline>/published/dt=<D>.json      one record per date that passed its publish check
    <root>/<pipeline>/published/model-dt=<D>.json  the model behind each date's publish
    <root>/<pipeline>/published/ledger/*.json    one file per publish, refusal, rollback, pin, unpin
    <root>/reports/<pipeline>/<D>/index.html     the run report

The marker records each file's size and SHA-256 (``"files": {name: {"size": n, "sha256": hex}}``; markers
written before checksums hold ``{name: size}`` and are still read). Readers check the size of every file they
open (one metadata call) and the checksum of files up to CHECKSUM_MAX_BYTES, which they read whole anyway
(JSON, the model, id maps); a mismatch is a CorruptArtifactError naming the path and the command to rerun.

A writer fills a fresh ``run=`` directory and then writes the marker in one operation (``os.replace`` locally, a
single object PUT on GCS, both atomic), so a reader sees either the previous complete partition or the new one,
never half of one. Re-running a date writes a new run directory and moves the marker; older run directories are
removed afterwards unless a publish record within the retention (or the one in service) still references them.

Records refer to other artifacts by paths RELATIVE to the root (``demo/export/dt=.../run=...``), so the whole
root can move (RECO_HOME, a bucket copy); ``resolve`` turns them into filesystem paths and ``display`` into what a
person pastes. Records written before this (absolute paths) are still read: a path under the current root is used
as is, one under an old root is re-rooted at its ``<pipeline>/`` component.

Readers follow SERVING.json only (``serving``, ``latest``, ``promoted_model``); LATEST.json and MODEL.json of
stores written before it are read when there is no SERVING.json yet.

This module knows nothing of steps: callers pass the step name only so that errors can say what to rerun.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from batch.errors import CorruptArtifactError, MissingArtifactError

MARKER = "_COMMITTED.json"
# Files up to this size are read whole and checked against their SHA-256 on every open; bigger ones (exports,
# interactions at scale) are streamed and only their size is checked.
CHECKSUM_MAX_BYTES = 64 * 1024 * 1024


def file_entry(value: Any) -> tuple[int | None, str | None]:
    """(size, sha256) of a marker's file entry: ``{"size", "sha256"}``, or an older marker's bare size."""
    if isinstance(value, dict):
        size, digest = value.get("size"), value.get("sha256")
        return (int(size) if isinstance(size, int) else None, digest if isinstance(digest, str) else None)
    if isinstance(value, int) and not isinstance(value, bool):
        return value, None
    return None, None


class _HashingWriter(io.RawIOBase):
    """Counts and hashes what goes through to ``raw``. Not seekable, so zip (npz) writes in streaming mode and
    no byte is written twice: the hash is of the file as stored."""

    def __init__(self, raw):
        super().__init__()
        self.raw = raw
        self.size = 0
        self.sha256 = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        self.raw.write(view)
        self.sha256.update(view)
        self.size += len(view)
        return len(view)

    def tell(self) -> int:
        return self.size

    def seek(self, *_args) -> int:
        raise io.UnsupportedOperation("seek")

    def flush(self) -> None:
        self.raw.flush()

    def close(self) -> None:  # the underlying file is closed by its owner
        if not self.closed:
            self.flush()
        super().close()


@dataclass(frozen=True)
class Pointer:
    """A forward-only pointer under ``<root>/<pipeline>/published/``: one file naming the current record, and one
    record file per date it was given (what served when; garbage collection keeps the run directories they name)."""

    current: str
    record_prefix: str


PUBLISH = Pointer("LATEST.json", "dt=")  # the last good publish: what consumers read
PROMOTED_MODEL = Pointer("MODEL.json", "model-dt=")  # the model behind it: what the model gate compares with
SERVING = (
    "SERVING.json"  # the one commit point: {"publish": record, "model": record, "warehouse": state, ...}
)
DEFAULT_RETENTION_DAYS = 30


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def write_bytes_atomic(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Whole-object write that readers never see half-done."""
    if _is_local(fs):
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    else:  # object stores: a single PUT is atomic
        fs.pipe_file(path, data)


@dataclass
class Committed:
    """A committed partition: where its files are and what the writer recorded."""

    fs: fsspec.AbstractFileSystem
    url: str  # partition directory
    run_dir: str
    marker: dict
    step: str
    rerun: str | None = None  # the whole command that rebuilds this partition, for error hints

    @property
    def metadata(self) -> dict:
        return self.marker.get("metadata", {})

    @property
    def run_id(self) -> str:
        return self.marker["run_id"]

    def path(self, name: str) -> str:
        if name not in self.marker.get("files", {}):
            raise self._corrupt(f"the commit marker lists no file {name!r}", posixpath.join(self.url, MARKER))
        return posixpath.join(self.run_dir, name)

    def _corrupt(self, message: str, path: str) -> CorruptArtifactError:
        return CorruptArtifactError(message, path=path, step=self.step, rerun=self.rerun)

    def _missing(self, path: str) -> MissingArtifactError:
        return MissingArtifactError(
            "a committed file is missing", path=path, step=self.step, rerun=self.rerun
        )

    def _checked_size(self, name: str, path: str) -> tuple[int, str | None]:
        """The file's size after checking it against the marker; its recorded checksum if any."""
        size, digest = file_entry(self.marker["files"][name])
        try:
            actual = int(self.fs.size(path))
        except FileNotFoundError:
            raise self._missing(path) from None
        if size is not None and actual != size:
            raise self._corrupt(
                f"size is {actual} bytes but the commit marker recorded {size} (truncated or replaced)", path
            )
        return actual, digest

    def open(self, name: str, mode: str = "rb"):
        """The committed file, checked: size always, SHA-256 when the file is small enough to read whole."""
        path = self.path(name)
        size, digest = self._checked_size(name, path)
        if digest is None or size > CHECKSUM_MAX_BYTES:
            try:
                return self.fs.open(path, mode)
            except FileNotFoundError:
                raise self._missing(path) from None
        try:
            data = self.fs.cat_file(path)
        except FileNotFoundError:
            raise self._missing(path) from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise self._corrupt(
                f"SHA-256 is {actual[:12]}... but the commit marker recorded {digest[:12]}... (corrupt)", path
            )
        return io.BytesIO(data)

    def verify(self) -> None:
        """Check every file of the partition: size, and SHA-256 streamed whatever the size."""
        for name in self.marker["files"]:
            self.verify_file(name)

    def verify_file(self, name: str) -> None:
        """Check one file: size, and SHA-256 streamed whatever the size."""
        path = self.path(name)
        _, digest = self._checked_size(name, path)
        if digest is None:
            return
        h = hashlib.sha256()
        with self.fs.open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
        if h.hexdigest() != digest:
            raise self._corrupt("SHA-256 differs from the commit marker's (corrupt)", path)

    def read_bytes(self, name: str) -> bytes:
        with self.open(name) as f:
            return f.read()

    def read_json(self, name: str) -> Any:
        try:
            return json.loads(self.read_bytes(name))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise self._corrupt(f"not valid JSON ({e})", self.path(name)) from None

    def read_parquet(self, name: str, columns: list[str] | None = None) -> pa.Table:
        path = self.path(name)
        try:
            with self.open(name) as f:
                return pq.read_table(f, columns=columns)
        except FileNotFoundError:
            raise self._missing(path) from None
        except (pa.ArrowInvalid, OSError) as e:
            raise self._corrupt(f"not a readable Parquet file ({e})", path) from None


@dataclass
class PartitionWriter:
    fs: fsspec.AbstractFileSystem
    url: str
    run_dir: str
    run_id: str
    files: dict[str, dict] = field(default_factory=dict)  # name -> {"size": bytes, "sha256": hex}
    metadata: dict = field(default_factory=dict)

    def path(self, name: str) -> str:
        return posixpath.join(self.run_dir, name)

    @contextmanager
    def open(self, name: str) -> Iterator[io.RawIOBase]:
        """A binary file to write ``name``; its size and SHA-256 go into the commit marker."""
        path = self.path(name)
        with self.fs.open(path, "wb") as f:
            hashing = _HashingWriter(f)
            yield hashing
            hashing.close()
        self.files[name] = {"size": hashing.size, "sha256": hashing.sha256.hexdigest()}

    def write_bytes(self, name: str, data: bytes) -> None:
        with self.open(name) as f:
            f.write(data)

    def write_json(self, name: str, obj: Any) -> None:
        self.write_bytes(name, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())

    def write_parquet(self, name: str, table: pa.Table) -> None:
        with self.open(name) as f:
            pq.write_table(table, f, compression="zstd")

    @contextmanager
    def parquet_writer(self, name: str, schema: pa.Schema) -> Iterator[pq.ParquetWriter]:
        """Streaming writer: batches go out as they come, so memory stays bounded."""
        with self.open(name) as f, pq.ParquetWriter(f, schema, compression="zstd") as w:
            yield w


class ArtifactStore:
    """Date-partitioned artifacts under one root URL."""

    def __init__(self, root_url: str, *, retention_days: int = DEFAULT_RETENTION_DAYS):
        self.root_url = root_url.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.root_url)
        if _is_local(self.fs):
            self.root = os.path.abspath(self.root)
        self.retention_days = retention_days

    # -- paths in records: relative to the root --------------------------------------------------------------

    def relative(self, path: str) -> str:
        """A filesystem path under the root as records keep it: relative to the root."""
        path = self.fs._strip_protocol(path) if "://" in path else path
        rel = posixpath.relpath(path, self.root)
        if rel.startswith(".."):
            raise ValueError(f"{path} is not under the artifact root {self.root_url}")
        return rel

    def resolve(self, path: str) -> str:
        """A path from a record (relative; or absolute/URL from before relative records) as a filesystem path."""
        if "://" not in path and not path.startswith("/"):
            return posixpath.join(self.root, path)
        stripped = self.fs._strip_protocol(path) if "://" in path else path
        if stripped == self.root or stripped.startswith(self.root + "/") or self.fs.exists(stripped):
            return stripped
        # an absolute record from an old root (RECO_HOME moved): re-root at the "<pipeline>/<dataset>/dt=" part
        parts = stripped.strip("/").split("/")
        for i in range(len(parts) - 2, -1, -1):
            if i + 2 < len(parts) and parts[i + 2].startswith("dt="):
                candidate = posixpath.join(self.root, *parts[i:])
                if self.fs.exists(candidate):
                    return candidate
        return stripped

    def display(self, path: str) -> str:
        """A path as a person would paste it: absolute, with its scheme for remote stores."""
        if "://" in path:
            return path
        path = self.resolve(path)
        if _is_local(self.fs):
            return path
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        return f"{protocol}://{path}"

    def display_record(self, record: dict | None) -> dict | None:
        """A record with its run_dir and files as full paths/URLs, for people."""
        if record is None:
            return None
        out = dict(record)
        if isinstance(out.get("run_dir"), str):
            out["run_dir"] = self.display(out["run_dir"])
        if isinstance(out.get("files"), dict):
            out["files"] = {k: self.display(v) for k, v in out["files"].items()}
        return out

    def partition_url(
        self, pipeline: str, dataset: str, dt: date | None = None, shard: tuple[int, int] | None = None
    ) -> str:
        parts = [self.root, pipeline, dataset]
        if dt is not None:
            parts.append(f"dt={dt.isoformat()}")
        if shard is not None:
            index, count = shard
            parts.append(f"shard={index:05d}-of-{count:05d}")
        return posixpath.join(*parts)

    @contextmanager
    def writer(
        self,
        pipeline: str,
        dataset: str,
        dt: date | None,
        *,
        shard: tuple[int, int] | None = None,
        run_id: str | None = None,
    ) -> Iterator[PartitionWriter]:
        """Write a partition: files go to a fresh run directory; the marker moves only if the block succeeds."""
        url = self.partition_url(pipeline, dataset, dt, shard)
        run_id = run_id or new_run_id()
        run_dir = posixpath.join(url, f"run={run_id}")
        self.fs.makedirs(run_dir, exist_ok=True)
        w = PartitionWriter(self.fs, url, run_dir, run_id)
        try:
            yield w
        except BaseException:
            self.fs.rm(run_dir, recursive=True)
            raise
        marker = {"run_id": run_id, "committed_at": now_utc(), "files": w.files, "metadata": w.metadata}
        write_bytes_atomic(
            self.fs, posixpath.join(url, MARKER), json.dumps(marker, indent=2, default=str).encode()
        )
        self._collect_garbage(url, keep={run_dir})

    def _protected_runs(self, pipeline_url: str) -> set[str]:
        """Run directories that consumers may read or a rollback may restore: the ones the serving record, and
        every publish/promotion record and ledger entry within ``retention_days`` of the newest, point at."""
        published = posixpath.join(pipeline_url, "published")
        docs = []
        for directory in (published, posixpath.join(published, "ledger")):
            try:
                names = self.fs.ls(directory, detail=False)
            except FileNotFoundError:
                continue
            for name in names:
                if not name.endswith(".json"):
                    continue
                try:
                    docs.append(json.loads(self.fs.cat_file(name)))
                except (FileNotFoundError, ValueError, IsADirectoryError):
                    continue
        records: list[dict] = []
        for doc in docs:
            if not isinstance(doc, dict):
                continue
            records.append(doc)
            for key in ("publish", "model", "restored", "replaced"):  # SERVING.json and ledger entries
                if isinstance(doc.get(key), dict):
                    records.append(
                        doc[key] | {"_serving": key in ("publish", "model") and "committed_at" in doc}
                    )
        dates = [r["dt"] for r in records if isinstance(r.get("dt"), str) and "run_dir" in r]
        if not dates:
            return set()
        newest = date.fromisoformat(max(dates))
        horizon = (newest - timedelta(days=self.retention_days)).isoformat()
        keep = set()
        for r in records:
            run_dir = r.get("run_dir")
            if isinstance(run_dir, str) and (r.get("dt", "") >= horizon or r.get("_serving")):
                keep.add(self.resolve(run_dir).rstrip("/"))
        return keep

    def _collect_garbage(self, url: str, keep: set[str]) -> None:
        rel = posixpath.relpath(url, self.root)
        pipeline_url = posixpath.join(self.root, rel.split("/")[0])
        keep = keep | self._protected_runs(pipeline_url)
        try:
            entries = self.fs.ls(url, detail=False)
        except FileNotFoundError:
            return
        for entry in entries:
            entry = entry.rstrip("/")
            if posixpath.basename(entry).startswith("run=") and entry not in keep:
                self.fs.rm(entry, recursive=True)

    def committed(
        self,
        pipeline: str,
        dataset: str,
        dt: date | None,
        *,
        step: str,
        shard: tuple[int, int] | None = None,
        rerun: str | None = None,
    ) -> Committed:
        """The committed partition, or an error naming the path and the step to rerun."""
        url = self.partition_url(pipeline, dataset, dt, shard)
        marker_path = posixpath.join(url, MARKER)
        if rerun is None and dt is not None:  # the whole command, not one step back at a time
            rerun = f"reco run --pipeline {pipeline} --date {dt.isoformat()}"
        try:
            raw = self.fs.cat_file(marker_path)
        except FileNotFoundError:
            raise MissingArtifactError(
                f"no committed '{dataset}' output for {pipeline} {dt or ''}".rstrip(),
                path=self.display(marker_path),
                step=step,
                rerun=rerun,
            ) from None
        try:
            marker = json.loads(raw)
            run_id = marker["run_id"]
            if not isinstance(marker.get("files"), dict):
                raise KeyError("files")
        except (ValueError, KeyError, TypeError) as e:
            raise CorruptArtifactError(
                f"commit marker is corrupt ({e})", path=self.display(marker_path), step=step, rerun=rerun
            ) from None
        return Committed(self.fs, url, posixpath.join(url, f"run={run_id}"), marker, step, rerun)

    def exists(
        self, pipeline: str, dataset: str, dt: date | None, shard: tuple[int, int] | None = None
    ) -> bool:
        return self.fs.exists(posixpath.join(self.partition_url(pipeline, dataset, dt, shard), MARKER))

    # -- the serving record (the commit point) and the per-date records ----------------------------------------

    def _published_dir(self, pipeline: str) -> str:
        return posixpath.join(self.root, pipeline, "published")

    def _read_json(self, path: str) -> Any:
        try:
            return json.loads(self.fs.cat_file(path))
        except FileNotFoundError:
            return None

    def serving(self, pipeline: str) -> dict | None:
        """What is in service: ``{"publish", "model", "warehouse", "pinned", "event", "committed_at"}``, or None
        before the first publish. Stores from before SERVING.json: built from LATEST.json and MODEL.json."""
        d = self._published_dir(pipeline)
        state = self._read_json(posixpath.join(d, SERVING))
        if state is not None:
            return state
        latest = self._read_json(posixpath.join(d, PUBLISH.current))
        if latest is None:
            return None
        return {
            "publish": latest,
            "model": self._read_json(posixpath.join(d, PROMOTED_MODEL.current)),
            "warehouse": None,
            "pinned": None,
            "legacy": True,
        }

    def commit_serving(self, pipeline: str, state: dict) -> None:
        """Write the serving record: one atomic write that moves publish, model and warehouse state together."""
        blob = json.dumps(
            {**state, "committed_at": now_utc()}, indent=2, sort_keys=True, default=str
        ).encode()
        write_bytes_atomic(self.fs, posixpath.join(self._published_dir(pipeline), SERVING), blob)

    def pointer(self, pipeline: str, kind: Pointer) -> dict | None:
        """The record a pointer names now (the serving record's publish or model part), or None."""
        state = self.serving(pipeline)
        if state is None:
            return None
        return state.get("publish" if kind is PUBLISH or kind.current == PUBLISH.current else "model")

    def record_path(self, pipeline: str, kind: Pointer, dt: str) -> str:
        return posixpath.join(self._published_dir(pipeline), f"{kind.record_prefix}{dt}.json")

    def pointer_record(self, pipeline: str, kind: Pointer, dt: str) -> dict | None:
        """The record of one date, or None."""
        return self._read_json(self.record_path(pipeline, kind, dt))

    def pointer_records(self, pipeline: str, kind: Pointer) -> list[dict]:
        """Every record the pointer was given, one per date, oldest first."""
        d = self._published_dir(pipeline)
        try:
            names = sorted(
                n
                for n in self.fs.ls(d, detail=False)
                if posixpath.basename(n).startswith(kind.record_prefix) and n.endswith(".json")
            )
        except FileNotFoundError:
            return []
        return [json.loads(self.fs.cat_file(n)) for n in names]

    def pointer_before(self, pipeline: str, kind: Pointer, before: date) -> dict | None:
        """What was in service for a session date: the serving record's when it is older than the date (after a
        rollback that is the restored one, not the latest record); for a backfill, the latest record before it."""
        current = self.pointer(pipeline, kind)
        if current is not None and current["dt"] < before.isoformat():
            return current
        earlier = [r for r in self.pointer_records(pipeline, kind) if r["dt"] < before.isoformat()]
        return earlier[-1] if earlier else None

    def write_record(self, pipeline: str, kind: Pointer, record: dict) -> None:
        """Keep the record of its date (what served when; what a rollback restores)."""
        blob = json.dumps(record, indent=2, default=str).encode()
        write_bytes_atomic(self.fs, self.record_path(pipeline, kind, record["dt"]), blob)

    # the two pointers every pipeline has
    def latest(self, pipeline: str) -> dict | None:
        return self.pointer(pipeline, PUBLISH)

    def publish_records(self, pipeline: str) -> list[dict]:
        """Every date that passed its publish check, oldest first."""
        return self.pointer_records(pipeline, PUBLISH)

    def previous_publish(self, pipeline: str, before: date) -> dict | None:
        return self.pointer_before(pipeline, PUBLISH, before)

    def promoted_model(self, pipeline: str) -> dict | None:
        """The model in service now (the serving publish's), or None before the first promotion."""
        return self.pointer(pipeline, PROMOTED_MODEL)

    def reference_model(self, pipeline: str, before: date) -> dict | None:
        """The promotion record of the model in service for a session date."""
        return self.pointer_before(pipeline, PROMOTED_MODEL, before)

    # -- other locations -----------------------------------------------------------------------------------------

    def report_location(self, pipeline: str, dt: date) -> str:
        """Where the run report of a session date lives."""
        return posixpath.join(self.root, "reports", pipeline, dt.isoformat(), "index.html")

    def timings_location(
        self, pipeline: str, dt: date, step: str, shard: tuple[int, int] | None = None
    ) -> str:
        """Where the timings record of one step process (batch.timings) lives: one per step, date and shard,
        the latest run's (a rerun replaces it, like the metric store's latest record)."""
        name = step if shard is None else f"{step}.shard-{shard[0]:05d}-of-{shard[1]:05d}"
        return posixpath.join(self.root, pipeline, "_timings", f"dt={dt.isoformat()}", f"{name}.json")

    def write_timings(
        self, pipeline: str, dt: date, step: str, shard: tuple[int, int] | None, record: dict
    ) -> None:
        path = self.timings_location(pipeline, dt, step, shard)
        self.fs.makedirs(posixpath.dirname(path), exist_ok=True)
        write_bytes_atomic(self.fs, path, json.dumps(record, indent=2, default=str).encode())

    def read_timings(
        self, pipeline: str, dt: date, step: str, shard: tuple[int, int] | None = None
    ) -> dict | None:
        try:
            doc = self._read_json(self.timings_location(pipeline, dt, step, shard))
        except ValueError:  # a torn or foreign file: timings are for people, never a reason to fail
            return None
        return doc if isinstance(doc, dict) else None
