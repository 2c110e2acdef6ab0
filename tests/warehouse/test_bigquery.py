"""BigQueryWarehouse with the real google-cloud-bigquery client, over HTTP, against the in-process REST server
in conftest.py. Assertions are on what the server received (the REST requests) and on what our code returns."""

from __future__ import annotations

import io
import re
import warnings
from datetime import UTC, date, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.api_core import exceptions as api_exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from batch.warehouse.base import load_sql
from batch.warehouse.bigquery import BigQueryWarehouse

PROJECT, DATASET, LOCATION = "reco-proj", "reco_ds", "asia-northeast1"
PARTITION = date(2026, 11, 21)


@pytest.fixture
def wh(bq_server, fast_retries):
    client = bigquery.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": bq_server.base_url},
    )
    warehouse = BigQueryWarehouse(project=PROJECT, dataset=DATASET, location=LOCATION, client=client)
    yield warehouse
    warehouse.close()
    client.close()


def parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def load_config(server) -> dict:
    (job,) = server.inserted_jobs()
    assert job["jobReference"]["projectId"] == PROJECT
    assert job["jobReference"]["location"] == LOCATION
    return job["configuration"]["load"]


EVENTS = pa.table(
    {
        "user_id": ["u1", "u2", "u3"],
        "item_id": ["i1", "i1", "i2"],
        "event_type": ["view", "like", "view"],
        "ts": pa.array(
            [datetime(2026, 11, 21, h, tzinfo=UTC) for h in (1, 2, 3)], type=pa.timestamp("us", tz="UTC")
        ),
        "dt": pa.array([PARTITION] * 3, type=pa.date32()),
    }
)


# --- query ----------------------------------------------------------------------------------------------------


def test_query_sends_rendered_sql_and_named_parameters(wh, bq_server):
    bq_server.answer_query([{"name": "n", "type": "INTEGER", "mode": "NULLABLE"}], [(1,)])
    params = {
        "session_date": date(2026, 11, 21),
        "window_end": datetime(2026, 11, 21, 15, 0, tzinfo=UTC),
        "now": datetime(2026, 11, 22, 1, 2, 3, 456789, tzinfo=UTC),
        "min_events": 5,
        "decay": 0.25,
        "timezone": "Asia/Tokyo",
        "event_weights": [{"event_type": "view", "weight": 1.0}, {"event_type": "like", "weight": 4.0}],
    }
    wh.query(
        "SELECT COUNT(*) AS n FROM {events_table} e JOIN {items_table} i USING (item_id)"
        " WHERE e.ts < @window_end AND e.dt = @session_date",
        params,
        tables={"events_table": "demo_events", "items_table": "catalog.items"},
    )

    (job,) = bq_server.inserted_jobs()
    assert job["jobReference"]["location"] == LOCATION
    cfg = job["configuration"]["query"]
    assert cfg["query"] == (
        f"SELECT COUNT(*) AS n FROM `{PROJECT}.{DATASET}.demo_events` e JOIN `{PROJECT}.catalog.items` i"
        " USING (item_id) WHERE e.ts < @window_end AND e.dt = @session_date"
    )
    assert cfg["useLegacySql"] is False
    assert cfg["parameterMode"] == "NAMED"
    by_name = {p["name"]: p for p in cfg["queryParameters"]}
    assert list(by_name) == list(params)
    assert by_name["session_date"] == {
        "name": "session_date",
        "parameterType": {"type": "DATE"},
        "parameterValue": {"value": "2026-11-21"},
    }
    assert by_name["window_end"] == {
        "name": "window_end",
        "parameterType": {"type": "TIMESTAMP"},
        "parameterValue": {"value": "2026-11-21 15:00:00+00:00"},
    }
    assert by_name["now"]["parameterValue"] == {"value": "2026-11-22 01:02:03.456789+00:00"}
    assert by_name["min_events"] == {
        "name": "min_events",
        "parameterType": {"type": "INT64"},
        "parameterValue": {"value": "5"},
    }
    # FLOAT64 travels as a JSON number (the client's encoding; BigQuery's JSON parser takes it for the string).
    assert by_name["decay"] == {
        "name": "decay",
        "parameterType": {"type": "FLOAT64"},
        "parameterValue": {"value": 0.25},
    }
    assert by_name["timezone"] == {
        "name": "timezone",
        "parameterType": {"type": "STRING"},
        "parameterValue": {"value": "Asia/Tokyo"},
    }
    assert by_name["event_weights"] == {
        "name": "event_weights",
        "parameterType": {
            "type": "ARRAY",
            "arrayType": {
                "type": "STRUCT",
                "structTypes": [
                    {"name": "event_type", "type": {"type": "STRING"}},
                    {"name": "weight", "type": {"type": "FLOAT64"}},
                ],
            },
        },
        "parameterValue": {
            "arrayValues": [
                {"structValues": {"event_type": {"value": "view"}, "weight": {"value": 1.0}}},
                {"structValues": {"event_type": {"value": "like"}, "weight": {"value": 4.0}}},
            ]
        },
    }


def test_query_timestamp_parameter_from_another_zone_is_sent_as_utc(wh, bq_server):
    from zoneinfo import ZoneInfo

    wh.query("SELECT @t AS t", {"t": datetime(2026, 11, 21, 0, 0, tzinfo=ZoneInfo("Asia/Tokyo"))})
    (job,) = bq_server.inserted_jobs()
    (param,) = job["configuration"]["query"]["queryParameters"]
    assert param["parameterValue"] == {"value": "2026-11-20 15:00:00+00:00"}


def test_query_returns_rows_as_arrow_over_rest_pages(wh, bq_server):
    fields = [
        {"name": "user_id", "type": "STRING", "mode": "NULLABLE"},
        {"name": "n_events", "type": "INTEGER", "mode": "NULLABLE"},
        {"name": "weight", "type": "FLOAT", "mode": "NULLABLE"},
        {"name": "ok", "type": "BOOLEAN", "mode": "NULLABLE"},
        {"name": "day", "type": "DATE", "mode": "NULLABLE"},
        {"name": "last_ts", "type": "TIMESTAMP", "mode": "NULLABLE"},
    ]
    rows = [
        (
            f"u{i}",
            i,
            i * 1.5,
            i % 2 == 0,
            date(2026, 11, 1 + i),
            datetime(2026, 11, 1 + i, 3, 4, 5, 678901, tzinfo=UTC),
        )
        for i in range(5)
    ]
    rows.append((None, None, None, None, None, None))
    bq_server.answer_query(fields, rows)
    bq_server.page_rows = 2  # the server caps each response: the client must follow pageToken

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = wh.query("SELECT * FROM {t}", tables={"t": "demo_events"})

    assert isinstance(out, pa.Table)
    assert out.column_names == [f["name"] for f in fields]
    assert out.schema.field("n_events").type == pa.int64()
    assert out.schema.field("weight").type == pa.float64()
    assert out.schema.field("ok").type == pa.bool_()
    assert out.schema.field("day").type == pa.date32()
    assert out.schema.field("last_ts").type == pa.timestamp("us", tz="UTC")
    assert [tuple(r.values()) for r in out.to_pylist()] == rows
    # Rows came over REST (getQueryResults / tabledata.list pages), following the page tokens.
    pages = [
        r
        for r in bq_server.requests
        if r.method == "GET"
        and (re.search(r"/queries/[^/]+$", r.path) or r.path.endswith("/data"))
        and r.query.get("maxResults") != ["0"]
    ]
    assert len(pages) == 3
    assert [p.query.get("pageToken") for p in pages] == [None, ["2"], ["4"]]
    # BigQuery Storage is not installed: the client falls back to REST (at most a warning), never fails.
    assert all("bigquerystorage" not in r.path for r in bq_server.requests)
    assert all("Storage" in str(w.message) for w in caught if issubclass(w.category, UserWarning))


def test_query_with_no_rows_keeps_the_schema(wh, bq_server):
    bq_server.answer_query(
        [
            {"name": "user_id", "type": "STRING", "mode": "NULLABLE"},
            {"name": "w", "type": "FLOAT", "mode": "NULLABLE"},
        ],
        [],
    )
    out = wh.query("SELECT user_id, w FROM {t} WHERE FALSE", tables={"t": "demo_events"})
    assert out.num_rows == 0
    assert out.column_names == ["user_id", "w"]


def test_failing_query_raises_with_the_server_message(wh, bq_server):
    bq_server.next_job_error = {
        "reason": "invalidQuery",
        "location": "query",
        "message": "Unrecognized name: usr_id at [1:8]",
    }
    with pytest.raises(api_exceptions.GoogleAPICallError, match=r"Unrecognized name: usr_id at \[1:8\]"):
        wh.query("SELECT usr_id FROM {t}", tables={"t": "demo_events"})


def sqlglot_parses(sql: str) -> bool:
    import sqlglot

    parsed = sqlglot.parse(sql, read="bigquery")
    return len(parsed) == 1 and parsed[0] is not None


@pytest.mark.parametrize("sql_file", ["aggregate_interactions", "aggregate_daily_partials"])
def test_real_aggregate_sql_reaches_bigquery_as_valid_standard_sql(wh, bq_server, make_ctx, sql_file):
    from batch.steps.aggregate import query_params

    ctx = make_ctx()
    params = query_params(ctx)
    bq_server.answer_query(
        [
            {"name": "user_id", "type": "STRING", "mode": "NULLABLE"},
            {"name": "item_id", "type": "STRING", "mode": "NULLABLE"},
            {"name": "weight", "type": "FLOAT", "mode": "NULLABLE"},
            {"name": "weight_train", "type": "FLOAT", "mode": "NULLABLE"},
            {"name": "holdout_events", "type": "INTEGER", "mode": "NULLABLE"},
            {"name": "n_events", "type": "INTEGER", "mode": "NULLABLE"},
            {"name": "last_ts", "type": "TIMESTAMP", "mode": "NULLABLE"},
        ],
        [("u1", "i1", 5.0, 1.0, 1, 2, datetime(2026, 11, 21, 3, tzinfo=UTC))],
    )
    out = wh.query_file(sql_file, params, tables={"events_table": ctx.pipeline.source.events_table})
    assert out.to_pylist()[0]["weight"] == 5.0

    (job,) = bq_server.inserted_jobs()
    cfg = job["configuration"]["query"]
    sql = cfg["query"]
    assert sql == wh.render(load_sql(sql_file), {"events_table": ctx.pipeline.source.events_table})
    assert "--@include" not in sql and "{" not in sql
    assert f"`{PROJECT}.{DATASET}.{ctx.pipeline.source.events_table}`" in sql
    assert "$" not in sql  # named @parameters, never DuckDB-style $parameters
    assert "@event_weights" in sql
    assert sqlglot_parses(sql)
    # Every @parameter in the SQL was sent, with the type BigQuery needs for it.
    used = set(re.findall(r"@(\w+)", sql))
    types = {p["name"]: p["parameterType"] for p in cfg["queryParameters"]}
    assert used <= set(types)
    for name in ("window_start", "window_end", "holdout_start", "now"):
        assert types[name] == {"type": "TIMESTAMP"}
    assert types["event_weights"]["type"] == "ARRAY"
    assert types["event_weights"]["arrayType"]["structTypes"] == [
        {"name": "event_type", "type": {"type": "STRING"}},
        {"name": "weight", "type": {"type": "FLOAT64"}},
    ]
    weights = {
        v["structValues"]["event_type"]["value"]: v["structValues"]["weight"]["value"]
        for v in next(p for p in cfg["queryParameters"] if p["name"] == "event_weights")["parameterValue"][
            "arrayValues"
        ]
    }
    assert weights == {k: float(v) for k, v in ctx.pipeline.aggregate.event_weights.items()}


# --- loads ----------------------------------------------------------------------------------------------------


def test_load_parquet_from_gcs_is_a_load_job_into_the_partition(wh, bq_server):
    url = "gs://reco-bucket/exports/dt=2026-11-21/part-0.parquet"
    bq_server.gcs[url] = parquet_bytes(EVENTS)

    assert wh.load_parquet("demo_scores", url, mode="replace_partition", partition=PARTITION) == 3

    assert not bq_server.received("POST", r"^/upload/")  # BigQuery reads the bucket; no bytes pass through us
    load = load_config(bq_server)
    assert load["sourceUris"] == [url]
    assert load["destinationTable"] == {
        "projectId": PROJECT,
        "datasetId": DATASET,
        "tableId": "demo_scores$20261121",
    }
    assert load["writeDisposition"] == "WRITE_TRUNCATE"
    assert load["sourceFormat"] == "PARQUET"
    assert load["timePartitioning"] == {"type": "DAY", "field": "dt"}


def test_load_parquet_append_and_replace_modes(wh, bq_server):
    url = "gs://reco-bucket/x.parquet"
    bq_server.gcs[url] = parquet_bytes(EVENTS)
    wh.load_parquet("other_ds.t", url, mode="append")
    wh.load_parquet("t", url, mode="replace", partition_column="day")
    first, second = (j["configuration"]["load"] for j in bq_server.inserted_jobs())
    assert first["writeDisposition"] == "WRITE_APPEND"
    assert first["destinationTable"] == {"projectId": PROJECT, "datasetId": "other_ds", "tableId": "t"}
    assert "timePartitioning" not in first
    assert second["writeDisposition"] == "WRITE_TRUNCATE"
    assert second["destinationTable"]["tableId"] == "t"
    assert "timePartitioning" not in second


def test_replace_partition_without_a_date_is_refused_before_any_request(wh, bq_server):
    with pytest.raises(ValueError, match="partition"):
        wh.load_parquet("t", "gs://b/x.parquet", mode="replace_partition")
    assert bq_server.requests == []


def _uploaded_table(server) -> pa.Table:
    (job_id,) = server.uploads
    return pq.read_table(io.BytesIO(server.uploads[job_id]))


def test_load_parquet_from_a_local_file_uploads_the_bytes(wh, bq_server, tmp_path):
    path = tmp_path / "scores.parquet"
    pq.write_table(EVENTS, path)

    assert wh.load_parquet("demo_scores", str(path), mode="replace_partition", partition=PARTITION) == 3

    load = load_config(bq_server)
    assert "sourceUris" not in load
    assert load["destinationTable"]["tableId"] == "demo_scores$20261121"
    assert load["writeDisposition"] == "WRITE_TRUNCATE"
    assert load["sourceFormat"] == "PARQUET"
    assert load["timePartitioning"] == {"type": "DAY", "field": "dt"}
    assert bq_server.received("POST", r"^/upload/bigquery/v2/projects/reco-proj/jobs$")
    assert _uploaded_table(bq_server).equals(EVENTS)
    assert bq_server.uploads[next(iter(bq_server.uploads))] == path.read_bytes()


def test_write_table_uploads_parquet_of_the_rows(wh, bq_server):
    n = wh.write_table("demo_scores", EVENTS, mode="replace_partition", partition=PARTITION)

    assert n == 3
    load = load_config(bq_server)
    assert load["destinationTable"] == {
        "projectId": PROJECT,
        "datasetId": DATASET,
        "tableId": "demo_scores$20261121",
    }
    assert load["writeDisposition"] == "WRITE_TRUNCATE"
    assert load["sourceFormat"] == "PARQUET"
    assert load["timePartitioning"] == {"type": "DAY", "field": "dt"}
    uploaded = _uploaded_table(bq_server)
    assert uploaded.schema.equals(EVENTS.schema, check_metadata=False)
    assert uploaded.to_pylist() == EVENTS.to_pylist()


def test_failing_load_job_raises_with_the_server_message(wh, bq_server):
    url = "gs://reco-bucket/x.parquet"
    bq_server.gcs[url] = parquet_bytes(EVENTS)
    bq_server.next_job_error = {
        "reason": "invalid",
        "location": url,
        "message": "Provided Schema does not match Table reco-proj:reco_ds.demo_scores. Field dt is missing",
    }
    with pytest.raises(api_exceptions.BadRequest, match="Field dt is missing"):
        wh.load_parquet("demo_scores", url, mode="replace_partition", partition=PARTITION)


def test_load_of_a_missing_gcs_object_raises(wh, bq_server):
    with pytest.raises(api_exceptions.NotFound, match="gs://reco-bucket/nope.parquet"):
        wh.load_parquet("t", "gs://reco-bucket/nope.parquet", mode="append")


# --- table_exists ---------------------------------------------------------------------------------------------


def test_table_exists_follows_tables_get(wh, bq_server):
    bq_server.tables.add(f"{PROJECT}.{DATASET}.demo_events")
    bq_server.tables.add(f"{PROJECT}.catalog.items")

    assert wh.table_exists("demo_events") is True
    assert wh.table_exists("catalog.items") is True
    assert wh.table_exists("missing") is False
    assert wh.table_exists("other-proj.catalog.items") is False

    paths = [r.path for r in bq_server.received("GET", "/tables/")]
    assert paths == [
        f"/bigquery/v2/projects/{PROJECT}/datasets/{DATASET}/tables/demo_events",
        f"/bigquery/v2/projects/{PROJECT}/datasets/catalog/tables/items",
        f"/bigquery/v2/projects/{PROJECT}/datasets/{DATASET}/tables/missing",
        "/bigquery/v2/projects/other-proj/datasets/catalog/tables/items",
    ]


def test_table_exists_does_not_hide_other_errors(wh, bq_server):
    bq_server.inject("GET", "/tables/", 403, reason="accessDenied")
    with pytest.raises(api_exceptions.Forbidden):
        wh.table_exists("demo_events")


# --- transient errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["gcs", "local_file", "write_table"])
def test_transient_5xx_on_jobs_get_is_retried(wh, bq_server, fast_retries, tmp_path, path):
    # The load job is RUNNING when inserted, so the client polls jobs.get: a 503 and a 500 come first.
    # (LoadJob.result() with its default retry would not retry them: googleapis/python-bigquery#2210.)
    url = "gs://reco-bucket/x.parquet"
    bq_server.gcs[url] = parquet_bytes(EVENTS)
    pq.write_table(EVENTS, tmp_path / "x.parquet")
    bq_server.inject("GET", "/jobs/", 503)
    bq_server.inject("GET", "/jobs/", 500, reason="internalError")

    if path == "write_table":
        n = wh.write_table("demo_scores", EVENTS, mode="replace_partition", partition=PARTITION)
    else:
        source = url if path == "gcs" else str(tmp_path / "x.parquet")
        n = wh.load_parquet("demo_scores", source, mode="replace_partition", partition=PARTITION)

    assert n == 3
    gets = bq_server.received("GET", r"/jobs/[^/]+$")
    assert len(gets) == 3  # 503, 500, then the DONE job
    assert len(fast_retries) >= 2  # the client backed off between the attempts


def test_transient_5xx_on_query_is_retried(wh, bq_server):
    bq_server.answer_query([{"name": "n", "type": "INTEGER", "mode": "NULLABLE"}], [(7,)])
    bq_server.inject("POST", "/jobs", 503)
    bq_server.inject("GET", "/queries/", 502, reason="badGateway")
    bq_server.inject("GET", "/jobs/", 503)

    out = wh.query("SELECT 7 AS n")

    assert out.to_pylist() == [{"n": 7}]
    inserts = bq_server.received("POST", r"/jobs$")
    assert len(inserts) == 2
    assert len({r.json()["jobReference"]["jobId"] for r in inserts}) == 1  # the same job id, not a second job
    assert len(bq_server.received("GET", r"/jobs/[^/]+$")) >= 2


def test_jobs_still_running_are_polled_until_done(wh, bq_server):
    url = "gs://reco-bucket/x.parquet"
    bq_server.gcs[url] = parquet_bytes(EVENTS)
    bq_server.polls_before_done = 2
    assert wh.load_parquet("t", url, mode="append") == 3
    assert len(bq_server.received("GET", r"/jobs/[^/]+$")) == 3


# --- partition census -----------------------------------------------------------------------------------------

EVENTS_REF = f"{PROJECT}.{DATASET}.events"
PARTITIONS_FIELDS = [
    {"name": "partition_id", "type": "STRING", "mode": "NULLABLE"},
    {"name": "total_rows", "type": "INTEGER", "mode": "NULLABLE"},
    {"name": "last_modified_time", "type": "TIMESTAMP", "mode": "NULLABLE"},
]
MODIFIED = datetime(2026, 11, 22, 1, 2, 3, tzinfo=UTC)


def test_partition_census_reads_information_schema_of_a_table_partitioned_by_day_on_ts(wh, bq_server):
    bq_server.tables.add(EVENTS_REF)
    bq_server.time_partitioning[EVENTS_REF] = {"type": "DAY", "field": "ts"}
    bq_server.answer_query(
        PARTITIONS_FIELDS,
        [
            ("20261120", 7, MODIFIED),
            ("20261121", 12, datetime(2026, 11, 23, 4, tzinfo=UTC)),
            ("__UNPARTITIONED__", 0, None),
        ],
    )
    census = wh.partition_census("events", date(2026, 11, 20), date(2026, 11, 22))
    assert census == {
        date(2026, 11, 20): (7, MODIFIED),
        date(2026, 11, 21): (12, datetime(2026, 11, 23, 4, tzinfo=UTC)),
    }
    assert bq_server.received("GET", rf"/datasets/{DATASET}/tables/events$")
    (job,) = bq_server.inserted_jobs()
    cfg = job["configuration"]["query"]
    assert f"`{PROJECT}.{DATASET}.INFORMATION_SCHEMA.PARTITIONS`" in cfg["query"]
    assert "`" + EVENTS_REF + "`" not in cfg["query"]  # metadata only: no event row is read
    assert cfg["useLegacySql"] is False
    values = {p["name"]: p["parameterValue"]["value"] for p in cfg["queryParameters"]}
    assert values == {"table_name": "events", "first_id": "20261120", "last_id": "20261122"}
    assert sqlglot_parses(cfg["query"])


@pytest.mark.parametrize(
    "partitioning",
    [
        None,  # not partitioned
        {"type": "DAY"},  # ingestion time: a late event is in the partition of the day it arrived
        {"type": "DAY", "field": "dt"},  # another column
        {"type": "HOUR", "field": "ts"},
        {"type": "MONTH", "field": "ts"},
    ],
)
def test_partition_census_is_none_unless_partitioned_by_day_on_ts(wh, bq_server, partitioning):
    bq_server.tables.add(EVENTS_REF)
    if partitioning is not None:
        bq_server.time_partitioning[EVENTS_REF] = partitioning
    assert wh.partition_census("events", date(2026, 11, 20), date(2026, 11, 22)) is None
    assert bq_server.inserted_jobs() == []  # no query at all


def test_partition_census_is_none_while_the_streaming_buffer_holds_rows(wh, bq_server):
    bq_server.tables.add(EVENTS_REF)
    bq_server.time_partitioning[EVENTS_REF] = {"type": "DAY", "field": "ts"}
    bq_server.answer_query(PARTITIONS_FIELDS, [("20261120", 7, MODIFIED), ("__UNPARTITIONED__", 3, None)])
    assert wh.partition_census("events", date(2026, 11, 20), date(2026, 11, 22)) is None


def test_partition_census_of_a_missing_table_raises_not_found(wh, bq_server):
    with pytest.raises(api_exceptions.NotFound, match="events"):
        wh.partition_census("events", date(2026, 11, 20), date(2026, 11, 22))


def test_partition_census_retries_a_transient_tables_get_error(wh, bq_server):
    bq_server.tables.add(EVENTS_REF)
    bq_server.time_partitioning[EVENTS_REF] = {"type": "DAY", "field": "ts"}
    bq_server.inject("GET", "/tables/events", 503, "backendError")
    bq_server.answer_query(PARTITIONS_FIELDS, [("20261121", 5, MODIFIED)])
    assert wh.partition_census("events", date(2026, 11, 21), date(2026, 11, 21)) == {
        date(2026, 11, 21): (5, MODIFIED)
    }
    assert len(bq_server.received("GET", r"/tables/events$")) == 2


def test_partition_census_query_error_raises_with_the_server_message(wh, bq_server):
    bq_server.tables.add(EVENTS_REF)
    bq_server.time_partitioning[EVENTS_REF] = {"type": "DAY", "field": "ts"}
    bq_server.next_job_error = {
        "reason": "accessDenied",
        "message": "Access Denied: Table reco-proj:reco_ds.INFORMATION_SCHEMA.PARTITIONS",
    }
    with pytest.raises(api_exceptions.GoogleAPICallError, match="INFORMATION_SCHEMA.PARTITIONS"):
        wh.partition_census("events", date(2026, 11, 20), date(2026, 11, 22))
