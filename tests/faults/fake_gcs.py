"""An in-process HTTP server that speaks the objects part of the Cloud Storage JSON API v1.

It models the documented API (https://cloud.google.com/storage/docs/json_api/v1), not our client; the real
google-cloud-storage client talks to it through ``STORAGE_EMULATOR_HOST``:

- buckets.get      GET    /storage/v1/b/{bucket}                       (the client looks its bucket up)
- objects.insert   POST   /upload/storage/v1/b/{bucket}/o?uploadType=media&name=   (body: the bytes)
                                                                  ?uploadType=multipart  (metadata part, media part)
- objects.get      GET    /storage/v1/b/{bucket}/o/{object}             (alt=json: the object resource)
                   GET    /storage/v1/b/{bucket}/o/{object}?alt=media   (also under /download/storage/v1/...)
- objects.delete   DELETE /storage/v1/b/{bucket}/o/{object}             (204, empty body)

Object names in paths are percent-encoded (``/`` as ``%2F``). Every write makes a new generation (increasing
integers, as GCS generations are); metageneration starts at 1. Buckets are not versioned: only the live
generation exists. Preconditions (``ifGenerationMatch``, ``ifGenerationNotMatch``, ``ifMetagenerationMatch``,
``ifMetagenerationNotMatch``; ``ifGenerationMatch=0`` means "no live object") are checked and the write done
under one lock, so a precondition is atomic as on GCS; a failed one is 412 ``conditionNotMet`` (304 for the
"not match" ones on a read). A missing bucket or object is 404 ``notFound``. A multipart upload whose metadata
carries ``crc32c`` or ``md5Hash`` that do not match the bytes is refused with 400. Media answers carry the
``X-Goog-Generation``, ``X-Goog-Metageneration`` and ``X-Goog-Hash`` headers GCS sends. Errors use the documented
envelope ``{"error": {"code", "message", "errors": [{"domain", "reason", "message", ...}]}}``.

What a test sets up: ``add_bucket(name)``; ``put(bucket, name, data)`` (an object written by someone else, returns
its generation); ``deny(permission)`` (IAM refuses it: 403 ``forbidden``, e.g. ``storage.objects.create``);
``fail(method, status, times=)`` (the next matching requests are answered with that error before anything is
done, like a 503 ``backendError``); ``drop_response(method)`` (the next matching request is carried out and its
answer lost: the connection closes); ``before(method, action)`` (runs ``action()`` once, before the next matching
request is handled, while that request's client waits). ``object(bucket, name)`` reads what is stored;
``requests`` holds everything received.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qs, quote, unquote, urlsplit

import google_crc32c

from tests.api_server import DROP, ApiServer, BadUpload, Received, split_multipart

MAX_BODY = 16 * 1024 * 1024
OBJECT = re.compile(r"^/(?:download/)?storage/v1/b/([^/]+)/o/([^/]+)$")
BUCKET = re.compile(r"^/storage/v1/b/([^/]+)$")
UPLOAD = re.compile(r"^/upload/storage/v1/b/([^/]+)/o$")
REASONS = {  # the reason each status carries in the documented examples
    400: ("invalid", "Invalid argument."),
    401: ("required", "Login Required"),
    403: ("forbidden", "Forbidden"),
    404: ("notFound", "Not Found"),
    412: ("conditionNotMet", "At least one of the pre-conditions you specified did not hold."),
    429: ("rateLimitExceeded", "The total number of changes to the object exceeds the rate limit."),
    500: ("backendError", "Backend Error"),
    502: ("backendError", "Bad Gateway"),
    503: ("backendError", "Backend Error"),
}


class ApiError(Exception):
    def __init__(self, code: int, message: str | None = None, reason: str | None = None, **where: str):
        default_reason, default_message = REASONS.get(code, ("backendError", "Backend Error"))
        self.code, self.message, self.reason = code, message or default_message, reason or default_reason
        self.where = where  # locationType, location
        super().__init__(self.message)

    def body(self) -> dict:
        detail = {"domain": "global", "reason": self.reason, "message": self.message, **self.where}
        return {"error": {"code": self.code, "message": self.message, "errors": [detail]}}


def precondition_failed() -> ApiError:
    return ApiError(412, locationType="header", location="If-Match")


@dataclass
class StoredObject:
    data: bytes
    generation: int
    content_type: str
    metadata: dict[str, str] = field(default_factory=dict)
    metageneration: int = 1
    created: str = ""

    @property
    def crc32c(self) -> str:
        return base64.b64encode(google_crc32c.value(self.data).to_bytes(4, "big")).decode()

    @property
    def md5(self) -> str:
        return base64.b64encode(hashlib.md5(self.data).digest()).decode()


@dataclass
class _Fault:
    method: str
    path_part: str
    status: int = 0  # answer with this error before doing anything
    drop: bool = False  # do the request, then close the connection without an answer
    action: Callable[[], None] | None = None  # run first, outside the server's lock


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


def _int_param(query: dict[str, list[str]], name: str) -> int | None:
    values = query.get(name)
    if not values:
        return None
    try:
        return int(values[0])
    except ValueError:
        raise ApiError(400, f"Invalid value for {name}: {values[0]}", "invalidParameter") from None


class FakeGCS:
    def __init__(self, principal: str = "reco-batch@test-project.iam.gserviceaccount.com"):
        self.principal = principal
        self.buckets: dict[str, dict[str, StoredObject]] = {}
        self.denied: set[str] = set()
        self.requests: list[Received] = []
        self.base_url = ""
        self._faults: list[_Fault] = []
        self._generations = itertools.count(int(time.time() * 1_000_000))
        self._lock = threading.Lock()
        self._server = ApiServer(self, max_body=MAX_BODY)

    # --- test set-up ----------------------------------------------------------------------------------------------
    def add_bucket(self, name: str) -> None:
        self.buckets.setdefault(name, {})

    def put(self, bucket: str, name: str, data: bytes, content_type: str = "application/json") -> int:
        with self._lock:
            return self._write(bucket, name, data, content_type, {}).generation

    def object(self, bucket: str, name: str) -> StoredObject | None:
        with self._lock:
            return self.buckets.get(bucket, {}).get(name)

    def deny(self, permission: str) -> None:
        self.denied.add(permission)

    def fail(self, method: str, status: int, *, times: int = 1, path_part: str = "") -> None:
        self._faults.extend(_Fault(method, path_part, status=status) for _ in range(times))

    def drop_response(self, method: str, *, path_part: str = "") -> None:
        self._faults.append(_Fault(method, path_part, drop=True))

    def before(self, method: str, action: Callable[[], None], *, path_part: str = "") -> None:
        self._faults.append(_Fault(method, path_part, action=action))

    def received(self, method: str) -> list[Received]:
        return [r for r in self.requests if r.method == method]

    def pending_faults(self) -> int:
        return len(self._faults)

    # --- serving --------------------------------------------------------------------------------------------------
    def start(self) -> FakeGCS:
        self.base_url = self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.method == method and fault.path_part in path:
                    return self._faults.pop(i)
        return None

    def handle(self, method: str, url: str, headers: dict[str, str], body: bytes):
        parts = urlsplit(url)
        query = parse_qs(parts.query, keep_blank_values=True)
        with self._lock:
            self.requests.append(Received(method, parts.path, query, headers, body))
        fault = self._take_fault(method, parts.path)
        if fault is not None and fault.action is not None:
            fault.action()
            fault = None
        if fault is not None and fault.status:
            return self._error(ApiError(fault.status))
        try:
            with self._lock:
                status, extra, payload = self._route(method, parts.path, query, headers, body)
        except ApiError as e:
            answer = self._error(e)
        except BadUpload as e:
            answer = self._error(ApiError(400, str(e), e.reason))
        else:
            if isinstance(payload, dict):  # JSON, the server's default Content-Type
                payload = json.dumps(payload).encode()
            answer = (status, extra, payload)
        return DROP if fault is not None and fault.drop else answer

    @staticmethod
    def _error(e: ApiError) -> tuple[int, dict, bytes]:
        if e.code == 304:  # Not Modified carries no body
            return 304, {}, b""
        return e.code, {}, json.dumps(e.body()).encode()

    # --- the API --------------------------------------------------------------------------------------------------
    def _route(self, method, path, query, headers, body):
        m = UPLOAD.match(path)
        if m and method == "POST":
            return 200, {}, self._insert(m[1], query, headers, body)
        m = BUCKET.match(path)
        if m and method == "GET":
            return 200, {}, self._bucket(m[1])
        m = OBJECT.match(path)
        if m:
            bucket, name = m[1], unquote(m[2])
            media = query.get("alt") == ["media"]
            if path.startswith("/download/") and not media:
                raise ApiError(400, "Download requests need alt=media", "invalidParameter")
            if method == "GET":
                return self._get(bucket, name, query, media=media)
            if method == "DELETE":
                self._delete(bucket, name, query)
                return 204, {}, b""
        raise ApiError(404, f"Not Found: {method} {path}")

    def _objects(self, bucket: str) -> dict[str, StoredObject]:
        if bucket not in self.buckets:
            raise ApiError(404, "The specified bucket does not exist.")
        return self.buckets[bucket]

    def _allow(self, permission: str) -> None:
        if permission in self.denied:
            raise ApiError(
                403,
                f"{self.principal} does not have {permission} access to the Google Cloud Storage object. "
                f"Permission '{permission}' denied on resource (or it may not exist).",
            )

    @staticmethod
    def _check_preconditions(query, current: StoredObject | None, *, read: bool) -> None:
        live = current.generation if current else 0
        match = _int_param(query, "ifGenerationMatch")
        if match is not None and match != live:
            raise precondition_failed()
        meta_match = _int_param(query, "ifMetagenerationMatch")
        if meta_match is not None and (current is None or meta_match != current.metageneration):
            raise precondition_failed()
        not_match = _int_param(query, "ifGenerationNotMatch")
        meta_not = _int_param(query, "ifMetagenerationNotMatch")
        if (not_match is not None and not_match == live) or (
            meta_not is not None and current is not None and meta_not == current.metageneration
        ):
            if read:
                raise ApiError(304, "Not Modified", "notModified")
            raise precondition_failed()

    def _live(self, bucket: str, name: str, query) -> StoredObject:
        current = self._objects(bucket).get(name)
        wanted = _int_param(query, "generation")
        if current is None or (wanted is not None and wanted != current.generation):
            raise ApiError(404, f"No such object: {bucket}/{name}")
        return current

    def _insert(self, bucket, query, headers, body) -> dict:
        objects = self._objects(bucket)
        kind = query.get("uploadType", [""])[0]
        content_type = headers.get("content-type", "application/octet-stream")
        if kind == "media":
            meta, data = {"name": query.get("name", [""])[0]}, body
        elif kind == "multipart":
            meta, data, content_type = split_multipart(content_type, body)
        else:
            raise ApiError(400, f"Upload type {kind!r} is not supported here", "invalidParameter")
        name = meta.get("name") or query.get("name", [""])[0]
        if not name:
            raise ApiError(400, "Required object name", "required")
        self._allow("storage.objects.create")
        current = objects.get(name)
        if current is not None:
            self._allow("storage.objects.delete")  # overwriting an object needs delete permission too
        self._check_preconditions(query, current, read=False)
        stored = StoredObject(data, 0, meta.get("contentType") or content_type, meta.get("metadata") or {})
        for key, have in (("crc32c", stored.crc32c), ("md5Hash", stored.md5)):
            if key in meta and meta[key] != have:
                raise ApiError(400, f'Provided {key} "{meta[key]}" doesn\'t match calculated {key} "{have}".')
        return self._resource(
            bucket, name, self._write(bucket, name, data, stored.content_type, stored.metadata)
        )

    def _write(self, bucket, name, data, content_type, metadata) -> StoredObject:
        stored = StoredObject(
            data, next(self._generations), content_type, metadata, created=_rfc3339(time.time())
        )
        self._objects(bucket)[name] = stored
        return stored

    def _get(self, bucket, name, query, *, media: bool):
        objects = self._objects(bucket)
        self._allow("storage.objects.get")
        current = self._live(bucket, name, query)
        self._check_preconditions(query, objects.get(name), read=True)
        if not media:
            return 200, {}, self._resource(bucket, name, current)
        headers = {
            "Content-Type": current.content_type,
            "X-Goog-Generation": str(current.generation),
            "X-Goog-Metageneration": str(current.metageneration),
            "X-Goog-Hash": f"crc32c={current.crc32c},md5={current.md5}",
            "X-Goog-Stored-Content-Length": str(len(current.data)),
            "X-Goog-Stored-Content-Encoding": "identity",
            "ETag": self._etag(current),
        }
        return 200, headers, current.data

    def _delete(self, bucket, name, query) -> None:
        objects = self._objects(bucket)
        self._allow("storage.objects.delete")
        current = self._live(bucket, name, query)
        self._check_preconditions(query, current, read=False)
        del objects[name]

    def _bucket(self, bucket: str) -> dict:
        self._objects(bucket)
        self._allow("storage.buckets.get")
        return {
            "kind": "storage#bucket",
            "id": bucket,
            "selfLink": f"{self.base_url}/storage/v1/b/{bucket}",
            "projectNumber": "123456789012",
            "name": bucket,
            "metageneration": "1",
            "location": "ASIA-NORTHEAST1",
            "locationType": "region",
            "storageClass": "STANDARD",
            "etag": "CAE=",
        }

    @staticmethod
    def _etag(obj: StoredObject) -> str:
        return base64.b64encode(f"{obj.generation}/{obj.metageneration}".encode()).decode()

    def _resource(self, bucket: str, name: str, obj: StoredObject) -> dict:
        path = f"b/{bucket}/o/{quote(name, safe='')}"
        out = {
            "kind": "storage#object",
            "id": f"{bucket}/{name}/{obj.generation}",
            "selfLink": f"{self.base_url}/storage/v1/{path}",
            "mediaLink": f"{self.base_url}/download/storage/v1/{path}?generation={obj.generation}&alt=media",
            "name": name,
            "bucket": bucket,
            "generation": str(obj.generation),
            "metageneration": str(obj.metageneration),
            "contentType": obj.content_type,
            "storageClass": "STANDARD",
            "size": str(len(obj.data)),
            "md5Hash": obj.md5,
            "crc32c": obj.crc32c,
            "etag": self._etag(obj),
            "timeCreated": obj.created,
            "updated": obj.created,
            "timeStorageClassUpdated": obj.created,
        }
        if obj.metadata:
            out["metadata"] = obj.metadata
        return out
