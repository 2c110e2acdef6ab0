"""The serving view in BigQuery: one CREATE OR REPLACE VIEW DDL job over the real client and REST API."""

from __future__ import annotations

from datetime import date

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from batch.warehouse.bigquery import BigQueryWarehouse

PROJECT, DATASET, LOCATION = "reco-proj", "reco_ds", "asia-northeast1"


@pytest.fixture
def wh(bq_server, fast_retries):
    client = bigquery.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": bq_server.base_url},
    )
    warehouse = BigQueryWarehouse(project=PROJECT, dataset=DATASET, location=LOCATION, client=client)
    yield warehouse
    client.close()


def test_point_view_is_one_ddl_query_job_naming_the_partition(wh, bq_server):
    wh.point_view(
        "reco_export.recommendations_demo_serving", "reco_export.recommendations_demo", date(2026, 11, 20)
    )
    (job,) = bq_server.inserted_jobs()
    assert job["jobReference"]["location"] == LOCATION
    sql = job["configuration"]["query"]["query"]
    assert sql == (
        f"CREATE OR REPLACE VIEW `{PROJECT}.reco_export.recommendations_demo_serving` AS SELECT * FROM "
        f"`{PROJECT}.reco_export.recommendations_demo` WHERE `dt` = DATE '2026-11-20'"
    )
    assert job["configuration"]["query"].get("useLegacySql") in (False, None)


def test_a_failed_view_update_raises(wh, bq_server):
    bq_server.next_job_error = {"reason": "accessDenied", "message": "Access Denied: Table"}
    with pytest.raises(Exception, match="Access Denied"):
        wh.point_view("v", "t", date(2026, 11, 20))
