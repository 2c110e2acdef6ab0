"""An in-process BigQuery REST v2 server for the BigQuery warehouse tests.

It models the documented API (https://cloud.google.com/bigquery/docs/reference/rest), not our client:

- jobs.insert            POST /bigquery/v2/projects/{p}/jobs                 (Job resource in, Job resource out)
- jobs.insert + media    POST /upload/bigquery/v2/projects/{p}/jobs          (uploadType=multipart | resumable;
                         a resumable session answers with a ``Location`` to PUT the bytes to)
- jobs.get               GET  /bigquery/v2/projects/{p}/jobs/{jobId}?location=
- jobs.getQueryResults   GET  /bigquery/v2/projects/{p}/queries/{jobId}      (maxResults, pageToken, startIndex)
- tabledata.list         GET  /bigquery/v2/projects/{p}/datasets/{d}/tables/{t}/data
- tables.get             GET  /bigquery/v2/projects/{p}/datasets/{d}/tables/{t}   (404 notFound when absent;
                         ``timePartitioning`` {type, field} for a partitioned table)

Errors use the documented envelope ``{"error": {"code", "message", "errors": [{"reason", ...}], "status"}}``.
Jobs are looked up by (project, location, jobId): a jobs.get in the wrong location is a 404, as on BigQuery.
Query results are served in the REST row format (``{"f": [{"v": ...}]}``, every scalar a string; TIMESTAMP as
float seconds, or int64 microseconds under ``formatOptions.useInt64Timestamp``).

What a test sets up: ``tables`` (existing tables), ``time_partitioning`` (their partitioning), ``answer_query``
(schema and rows the next query job produces), ``gcs`` (objects a load job can read), ``next_job_error`` (the next
job ends DONE with this ``status.errorResult``), ``polls_before_done`` (jobs.get answers RUNNING that many times
first), ``page_rows`` (a server-side cap on rows per page) and ``inject(method, path_part, status, reason)``
(answer the next matching request with that error). Everything received is in ``requests`` (method, path, query,
lower-cased headers, body) and ``uploads`` (the media bytes of each upload job).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.api_server import ApiServer, BadUpload, Received, json_object, split_multipart

MAX_BODY = 64 * 1024 * 1024
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    500: "INTERNAL",
    502: "BAD_GATEWAY",
    503: "UNAVAILABLE",
}
JOB_TYPES = ("query", "load", "copy", "extract")
SCALAR_TYPES = {
    "INT64",
    "FLOAT64",
    "NUMERIC",
    "BIGNUMERIC",
    "BOOL",
    "STRING",
    "BYTES",
    "DATE",
    "DATETIME",
    "TIME",
    "TIMESTAMP",
    "GEOGRAPHY",
    "JSON",
    "INTERVAL",
}


class ApiError(Exception):
    def __init__(self, code: int, message: str, reason: str):
        super().__init__(message)
        self.code, self.message, self.reason = code, message, reason

    def body(self) -> dict:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "errors": [{"message": self.message, "domain": "global", "reason": self.reason}],
                "status": STATUS_NAMES.get(self.code, "UNKNOWN"),
            }
        }


def _check_param_type(t: Any, where: str) -> None:
    """QueryParameterType: {type, arrayType?, structTypes?[{name?, type, description?}]}."""
    if not isinstance(t, dict) or not isinstance(t.get("type"), str):
        raise ApiError(400, f"Invalid query parameter type at {where}", "invalidQuery")
    if t["type"] == "ARRAY":
        _check_param_type(t.get("arrayType"), f"{where}.arrayType")
    elif t["type"] == "STRUCT":
        fields = t.get("structTypes")
        if not isinstance(fields, list) or not fields:
            raise ApiError(400, f"STRUCT parameter type without structTypes at {where}", "invalidQuery")
        for i, f in enumerate(fields):
            _check_param_type(f.get("type"), f"{where}.structTypes[{i}]")
    elif t["type"] not in SCALAR_TYPES:
        raise ApiError(400, f"Unknown query parameter type {t['type']} at {where}", "invalidQuery")


def _check_param_value(t: dict, v: Any, where: str) -> None:
    """QueryParameterValue: {value?: string, arrayValues?: [...], structValues?: {name: value}}."""
    if not isinstance(v, dict):
        raise ApiError(400, f"Invalid query parameter value at {where}", "invalidQuery")
    if t["type"] == "ARRAY":
        for i, item in enumerate(v.get("arrayValues", [])):
            _check_param_value(t["arrayType"], item, f"{where}[{i}]")
    elif t["type"] == "STRUCT":
        values = v.get("structValues")
        names = [f.get("name") for f in t["structTypes"]]
        if not isinstance(values, dict) or set(values) - set(names):
            raise ApiError(
                400, f"Struct value fields do not match the struct type at {where}", "invalidQuery"
            )
        for f in t["structTypes"]:
            if f.get("name") in values:
                _check_param_value(f["type"], values[f["name"]], f"{where}.{f['name']}")
    elif "value" in v and not isinstance(v["value"], (str, int, float)):  # the JSON parser takes numbers too
        raise ApiError(400, f"Invalid scalar value at {where}", "invalidQuery")


def check_query_config(cfg: dict) -> None:
    """What BigQuery rejects in JobConfigurationQuery before running anything."""
    if not isinstance(cfg.get("query"), str) or not cfg["query"].strip():
        raise ApiError(400, "Query text is missing", "invalid")
    params = cfg.get("queryParameters") or []
    mode = cfg.get("parameterMode")
    if params and mode not in ("NAMED", "POSITIONAL"):
        raise ApiError(400, "parameterMode must be NAMED or POSITIONAL with queryParameters", "invalid")
    for i, p in enumerate(params):
        if mode == "NAMED" and not p.get("name"):
            raise ApiError(400, f"Named query parameter {i} has no name", "invalidQuery")
        _check_param_type(p.get("parameterType"), f"queryParameters[{i}]")
        _check_param_value(p["parameterType"], p.get("parameterValue"), f"queryParameters[{i}]")
    if cfg.get("useLegacySql", True) is not False and params:  # the REST default is legacy SQL
        raise ApiError(400, "Query parameters are not supported in legacy SQL", "invalidQuery")


def check_load_config(cfg: dict, *, media: bool) -> None:
    dest = cfg.get("destinationTable") or {}
    if not all(dest.get(k) for k in ("projectId", "datasetId", "tableId")):
        raise ApiError(400, "Load configuration must specify destinationTable", "invalid")
    if not media and not cfg.get("sourceUris"):
        raise ApiError(400, "Load configuration must specify at least one source URI", "invalid")
    if media and cfg.get("sourceUris"):
        raise ApiError(400, "Source URIs must not be set for a media upload", "invalid")
    tp = cfg.get("timePartitioning")
    if tp is not None and tp.get("type") not in ("DAY", "HOUR", "MONTH", "YEAR"):
        raise ApiError(400, "Invalid timePartitioning type", "invalid")
    if "$" in dest["tableId"]:
        decorator = dest["tableId"].split("$", 1)[1]
        if not re.fullmatch(r"\d{4}|\d{6}|\d{8}|\d{10}|__UNPARTITIONED__", decorator):
            raise ApiError(400, f"Invalid partition decorator {decorator}", "invalid")


@dataclass
class QueryResult:
    fields: list[dict]  # TableFieldSchema: {name, type, mode}
    rows: list[tuple]  # Python values; rendered in the REST row format when served


@dataclass
class FakeBigQuery:
    base_url: str = ""
    requests: list[Received] = field(default_factory=list)
    uploads: dict[str, bytes] = field(default_factory=dict)  # jobId -> media bytes
    jobs: dict[tuple[str, str, str], dict] = field(default_factory=dict)
    results: dict[str, QueryResult] = field(default_factory=dict)  # "p.d.t" of the anonymous destination
    tables: set[str] = field(default_factory=set)  # "project.dataset.table"
    # "project.dataset.table" -> the Table resource's timePartitioning ({type, field?, expirationMs?}); a table
    # without an entry is not partitioned (tables.get answers without timePartitioning)
    time_partitioning: dict[str, dict] = field(default_factory=dict)
    next_query_result: QueryResult | None = None
    next_job_error: dict | None = None
    polls_before_done: int = 0
    page_rows: int | None = None
    gcs: dict[str, bytes] = field(default_factory=dict)  # gs:// objects that load jobs may read
    injected: list[tuple[str, str, int, str]] = field(default_factory=list)
    _sessions: dict[str, dict] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: itertools.count = field(default_factory=itertools.count)

    # --- test helpers -------------------------------------------------------------------------------------------
    def inject(self, method: str, path_part: str, status: int, reason: str = "backendError", times: int = 1):
        """Answer the next ``times`` requests whose path contains ``path_part`` with an error."""
        self.injected.extend([(method, path_part, status, reason)] * times)

    def answer_query(self, fields: list[dict], rows: list[tuple]) -> None:
        """The next query job produces these rows (``fields``: TableFieldSchema dicts)."""
        self.next_query_result = QueryResult(fields, rows)

    def received(self, method: str, pattern: str) -> list[Received]:
        return [r for r in self.requests if r.method == method and re.search(pattern, r.path)]

    def inserted_jobs(self) -> list[dict]:
        """Job resources as the client sent them (metadata inserts and upload inserts)."""
        out = [r.json() for r in self.received("POST", r"^/bigquery/v2/projects/[^/]+/jobs$")]
        out += [
            r.json()
            for r in self.received("POST", r"^/upload/bigquery/v2/projects/[^/]+/jobs$")
            if r.query.get("uploadType") == ["resumable"]
        ]
        for r in self.received("POST", r"^/upload/bigquery/v2/projects/[^/]+/jobs$"):
            if r.query.get("uploadType") == ["multipart"]:
                meta = split_multipart(r.headers.get("content-type", ""), r.body)[0]
                out.append(meta)
        return out

    # --- request handling ---------------------------------------------------------------------------------------
    def handle(self, method: str, url: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, bytes]:
        parts = urlsplit(url)
        query = parse_qs(parts.query, keep_blank_values=True)
        with self._lock:
            self.requests.append(Received(method, parts.path, query, headers, body))
            for i, (m, part, status, reason) in enumerate(self.injected):
                if m == method and part in parts.path:
                    del self.injected[i]
                    err = ApiError(status, f"Injected {reason} ({status})", reason)
                    return status, {}, json.dumps(err.body()).encode()
            try:
                status, extra, payload = self._route(method, parts.path, query, headers, body)
            except ApiError as e:
                return e.code, {}, json.dumps(e.body()).encode()
            except BadUpload as e:
                err = ApiError(400, str(e), e.reason)
                return err.code, {}, json.dumps(err.body()).encode()
        return status, extra, payload if isinstance(payload, bytes) else json.dumps(payload).encode()

    def _route(self, method, path, query, headers, body):
        m = re.fullmatch(r"/bigquery/v2/projects/([^/]+)/jobs", path)
        if m and method == "POST":
            job = json_object(body)
            return 200, {}, self._insert(m[1], job, media=None)
        m = re.fullmatch(r"/upload/bigquery/v2/projects/([^/]+)/jobs", path)
        if m and method == "POST":
            kind = query.get("uploadType", [""])[0]
            if kind == "multipart":
                meta, media, _ = split_multipart(headers.get("content-type", ""), body)
                return 200, {}, self._insert(m[1], meta, media=media)
            if kind == "resumable":
                job = json_object(body)
                check_load_config(job.get("configuration", {}).get("load") or {}, media=True)
                sid = uuid.uuid4().hex
                self._sessions[sid] = {"project": m[1], "job": job, "data": b""}
                loc = f"{self.base_url}/upload/bigquery/v2/projects/{m[1]}/jobs?uploadType=resumable&upload_id={sid}"
                return 200, {"Location": loc}, b""
            raise ApiError(400, f"Unsupported uploadType {kind!r}", "invalid")
        if m and method == "PUT":
            return self._resumable_put(query, headers, body)
        m = re.fullmatch(r"/bigquery/v2/projects/([^/]+)/jobs/([^/]+)", path)
        if m and method == "GET":
            return 200, {}, self._get_job(m[1], m[2], query)
        m = re.fullmatch(r"/bigquery/v2/projects/([^/]+)/queries/([^/]+)", path)
        if m and method == "GET":
            return 200, {}, self._query_results(m[1], m[2], query)
        m = re.fullmatch(r"/bigquery/v2/projects/([^/]+)/datasets/([^/]+)/tables/([^/]+)/data", path)
        if m and method == "GET":
            return 200, {}, self._tabledata(m[1], m[2], m[3], query)
        m = re.fullmatch(r"/bigquery/v2/projects/([^/]+)/datasets/([^/]+)/tables/([^/]+)", path)
        if m and method == "GET":
            ref = ".".join(m.groups())
            if ref not in self.tables and ref not in self.results:
                raise ApiError(404, f"Not found: Table {m[1]}:{m[2]}.{m[3]}", "notFound")
            return (
                200,
                {},
                {
                    "kind": "bigquery#table",
                    "id": f"{m[1]}:{m[2]}.{m[3]}",
                    "tableReference": {"projectId": m[1], "datasetId": m[2], "tableId": m[3]},
                    "type": "TABLE",
                    "schema": {"fields": self.results[ref].fields if ref in self.results else []},
                    "numRows": str(len(self.results[ref].rows)) if ref in self.results else "0",
                }
                | (
                    {"timePartitioning": self.time_partitioning[ref]} if ref in self.time_partitioning else {}
                ),
            )
        raise ApiError(404, f"Not found: URL {method} {path}", "notFound")

    def _resumable_put(self, query, headers, body):
        sid = query.get("upload_id", [""])[0]
        session = self._sessions.get(sid)
        if session is None:
            raise ApiError(404, "No such upload session", "notFound")
        m = re.fullmatch(r"bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)", headers.get("content-range", ""))
        if m is None:
            raise ApiError(400, "Bad Content-Range", "invalid")
        if m[1] is not None:
            if int(m[1]) != len(session["data"]) or int(m[2]) - int(m[1]) + 1 != len(body):
                raise ApiError(400, "Content-Range does not match the upload", "invalid")
            session["data"] += body
        if m[3] == "*" or int(m[3]) != len(session["data"]):
            done = {"Range": f"bytes=0-{len(session['data']) - 1}"} if session["data"] else {}
            return 308, done, b""
        del self._sessions[sid]
        return 200, {}, self._insert(session["project"], session["job"], media=session["data"])

    def _insert(self, project: str, job: dict, *, media: bytes | None) -> dict:
        cfg = job.get("configuration") or {}
        kinds = [k for k in JOB_TYPES if k in cfg]
        if len(kinds) != 1:
            raise ApiError(
                400, "Job configuration must have exactly one of query, load, copy, extract", "invalid"
            )
        kind = kinds[0]
        if media is not None and kind != "load":
            raise ApiError(400, "Media upload is only for load jobs", "invalid")
        if kind == "query":
            check_query_config(cfg["query"])
        elif kind == "load":
            check_load_config(cfg["load"], media=media is not None)
        ref = dict(job.get("jobReference") or {})
        ref.setdefault("projectId", project)
        ref.setdefault("jobId", f"job_{next(self._ids)}")
        ref.setdefault("location", "US")
        key = (project, ref["location"], ref["jobId"])
        if key in self.jobs:
            raise ApiError(
                409, f"Already Exists: Job {project}:{ref['location']}.{ref['jobId']}", "duplicate"
            )
        now_ms = str(int(time.time() * 1000))
        resource = {
            "kind": "bigquery#job",
            "id": f"{project}:{ref['location']}.{ref['jobId']}",
            "selfLink": f"{self.base_url}/bigquery/v2/projects/{project}/jobs/{ref['jobId']}?location={ref['location']}",
            "jobReference": ref,
            "configuration": json.loads(json.dumps(cfg)) | {"jobType": kind.upper()},
            "status": {"state": "RUNNING"},
            "statistics": {"creationTime": now_ms, "startTime": now_ms},
            "_polls_left": self.polls_before_done,
            "_error": self.next_job_error,
        }
        self.next_job_error = None
        if kind == "query":
            anon = {
                "projectId": project,
                "datasetId": "_" + uuid.uuid4().hex[:16],
                "tableId": "anon" + ref["jobId"],
            }
            resource["configuration"]["query"].setdefault("destinationTable", anon)
            dest = resource["configuration"]["query"]["destinationTable"]
            self.results[".".join(dest[k] for k in ("projectId", "datasetId", "tableId"))] = (
                self.next_query_result or QueryResult([], [])
            )
            self.next_query_result = None
        if media is not None:
            self.uploads[ref["jobId"]] = media
        self.jobs[key] = resource
        return _public(resource)

    def _job(self, project: str, job_id: str, query) -> dict:
        location = query.get("location", ["US"])[0]
        job = self.jobs.get((project, location, job_id))
        if job is None:
            raise ApiError(404, f"Not found: Job {project}:{location}.{job_id}", "notFound")
        return job

    def _advance(self, job: dict) -> None:
        if job["status"]["state"] == "DONE":
            return
        if job["_polls_left"] > 0:
            job["_polls_left"] -= 1
            return
        job["status"] = {"state": "DONE"}
        job["statistics"]["endTime"] = str(int(time.time() * 1000))
        if job["_error"]:
            job["status"] = {"state": "DONE", "errorResult": job["_error"], "errors": [job["_error"]]}
        elif job["configuration"]["jobType"] == "LOAD":
            job_id = job["jobReference"]["jobId"]
            uris = job["configuration"]["load"].get("sourceUris") or []
            missing = [u for u in uris if u not in self.gcs]
            sources = (
                [self.uploads[job_id]]
                if job_id in self.uploads
                else [self.gcs[u] for u in uris if u in self.gcs]
            )
            rows = [_parquet_rows(b) for b in sources]
            if missing:
                error = {"reason": "notFound", "message": f"Not found: URI {missing[0]}"}
                job["status"] = {"state": "DONE", "errorResult": error, "errors": [error]}
            elif None in rows:
                error = {
                    "reason": "invalid",
                    "message": "Error while reading data, error message: not a Parquet file",
                }
                job["status"] = {"state": "DONE", "errorResult": error, "errors": [error]}
            else:
                job["statistics"]["load"] = {"outputRows": str(sum(rows)), "inputFiles": str(len(rows))}
        elif job["configuration"]["jobType"] == "QUERY":
            job["statistics"]["query"] = {"totalBytesProcessed": "0", "statementType": "SELECT"}

    def _get_job(self, project, job_id, query):
        job = self._job(project, job_id, query)
        self._advance(job)
        return _public(job)

    def _query_results(self, project, job_id, query):
        job = self._job(project, job_id, query)
        if job["configuration"]["jobType"] != "QUERY":
            raise ApiError(400, f"Job {project}:{job_id} is not a query", "invalid")
        job["_polls_left"] = 0  # getQueryResults waits (timeoutMs) for the query to finish
        self._advance(job)
        err = job["status"].get("errorResult")
        if err:  # a failed query: the call itself fails with the job's error
            raise ApiError(400, err["message"], err["reason"])
        dest = job["configuration"]["query"]["destinationTable"]
        result = self.results[".".join(dest[k] for k in ("projectId", "datasetId", "tableId"))]
        page = self._page(result, query)
        return {
            "kind": "bigquery#getQueryResultsResponse",
            "jobReference": job["jobReference"],
            "jobComplete": True,
            "cacheHit": False,
            "totalBytesProcessed": "0",
            "schema": {"fields": result.fields},
            "totalRows": str(len(result.rows)),
            **page,
        }

    def _tabledata(self, project, dataset, table, query):
        ref = f"{project}.{dataset}.{table}"
        if ref not in self.results:
            raise ApiError(404, f"Not found: Table {project}:{dataset}.{table}", "notFound")
        return {
            "kind": "bigquery#tableDataList",
            "totalRows": str(len(self.results[ref].rows)),
            **self._page(self.results[ref], query),
        }

    def _page(self, result: QueryResult, query) -> dict:
        start = int(query.get("pageToken", query.get("startIndex", ["0"]))[0] or 0)
        limit = len(result.rows)
        if "maxResults" in query:
            limit = int(query["maxResults"][0])
        if self.page_rows is not None:
            limit = min(limit, self.page_rows)
        if limit == 0:
            return {}
        chunk = result.rows[start : start + limit]
        int64_ts = query.get("formatOptions.useInt64Timestamp", ["false"])[0].lower() == "true"
        out: dict = {"rows": [_row(result.fields, r, int64_ts) for r in chunk]}
        if start + len(chunk) < len(result.rows):
            out["pageToken"] = str(start + len(chunk))
        return out


def _public(job: dict) -> dict:
    return {k: v for k, v in job.items() if not k.startswith("_")}


def _parquet_rows(data: bytes | None) -> int | None:
    if data is None:
        return None
    import io

    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(io.BytesIO(data)).metadata.num_rows
    except Exception:  # noqa: BLE001 - not Parquet: the job would fail on BigQuery
        return None


def _cell(ftype: str, value: Any, int64_ts: bool) -> Any:
    if value is None:
        return None
    if ftype == "TIMESTAMP":
        assert isinstance(value, datetime) and value.tzinfo is not None
        micros = round((value - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1_000_000)
        return str(micros) if int64_ts else f"{micros / 1_000_000:.6E}"
    if ftype in ("BOOL", "BOOLEAN"):
        return "true" if value else "false"
    if ftype in ("DATE", "DATETIME", "TIME"):
        return value.isoformat()
    return str(value)


def _row(fields: list[dict], values: tuple, int64_ts: bool) -> dict:
    return {"f": [{"v": _cell(f["type"], v, int64_ts)} for f, v in zip(fields, values, strict=True)]}


@pytest.fixture
def bq_server():
    fake = FakeBigQuery()
    server = ApiServer(fake, max_body=MAX_BODY)
    fake.base_url = server.start()
    try:
        yield fake
    finally:
        server.stop()
