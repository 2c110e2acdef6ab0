"""BigQuery: the cloud warehouse, with the real google-cloud-bigquery client.

Queries run as written (the SQL files are BigQuery Standard SQL). Writes are load jobs from Parquet; a date
partition is replaced atomically by loading into ``table$YYYYMMDD`` with ``WRITE_TRUNCATE``.
"""

from __future__ import annotations

import io
from datetime import date, datetime
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from batch.warehouse.base import Warehouse, WriteMode, check_table_name


def _scalar_type(value: Any) -> str:
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "FLOAT64"
    if isinstance(value, datetime):
        return "TIMESTAMP"
    if isinstance(value, date):
        return "DATE"
    return "STRING"


def query_parameters(params: dict[str, Any]) -> list:
    """Python values -> BigQuery query parameters: scalars, arrays, and arrays of structs (event weights)."""
    from google.cloud import bigquery

    out = []
    for name, value in params.items():
        if isinstance(value, (list, tuple)):
            if value and isinstance(value[0], dict):
                structs = [
                    bigquery.StructQueryParameter(
                        None, *[bigquery.ScalarQueryParameter(k, _scalar_type(v), v) for k, v in item.items()]
                    )
                    for item in value
                ]
                out.append(bigquery.ArrayQueryParameter(name, "STRUCT", structs))
            else:
                elem = _scalar_type(value[0]) if value else "STRING"
                out.append(bigquery.ArrayQueryParameter(name, elem, list(value)))
        else:
            out.append(bigquery.ScalarQueryParameter(name, _scalar_type(value), value))
    return out


def _load_job_retry():
    """The retry for polling a load job (jobs.get) until it is done.

    ``LoadJob.result()`` drops its retry when it *is* ``DEFAULT_RETRY`` (it then polls with ``retry=None``), so a
    single transient 5xx on jobs.get fails the load (googleapis/python-bigquery#2210). An equal copy goes through.
    """
    from google.cloud.bigquery.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_timeout(DEFAULT_RETRY.timeout)


class BigQueryWarehouse(Warehouse):
    name = "bigquery"

    def __init__(self, *, project: str, dataset: str, location: str | None = None, client=None):
        from google.cloud import bigquery

        self.project = project
        self.dataset = dataset
        self.location = location
        self.client = client or bigquery.Client(project=project, location=location)
        self.bytes_processed = 0

    def _qualified(self, table: str) -> str:
        parts = check_table_name(table).split(".")
        if len(parts) == 1:
            parts = [self.project, self.dataset, parts[0]]
        elif len(parts) == 2:
            parts = [self.project, *parts]
        return ".".join(parts)

    def table_ref(self, table: str) -> str:
        return f"`{self._qualified(table)}`"

    def query(
        self, sql: str, params: dict[str, Any] | None = None, *, tables: dict[str, str] | None = None
    ) -> pa.Table:
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(query_parameters=query_parameters(params or {}))
        job = self.client.query(self.render(sql, tables or {}), job_config=config, location=self.location)
        result = job.result().to_arrow()
        # bytes billed by the queries of this connection (the aggregate step reports them)
        self.bytes_processed += int(getattr(job, "total_bytes_processed", None) or 0)
        return result

    def table_exists(self, table: str) -> bool:
        from google.api_core.exceptions import NotFound

        try:
            self.client.get_table(self._qualified(table))
            return True
        except NotFound:
            return False

    def partition_census(
        self, table: str, first_day: date, last_day: date, *, ts_column: str = "ts"
    ) -> dict[date, tuple[int, datetime]] | None:
        """Rows and last modification per day partition from ``INFORMATION_SCHEMA.PARTITIONS``: metadata, no
        event bytes read. None unless the table is partitioned by DAY on ``ts_column`` itself: under
        ingestion-time partitioning (or another column) a late event lands in the partition of the day it
        arrived, not of its timestamp, so a restated past day would look unchanged. None too while rows wait in
        ``__UNPARTITIONED__`` (the streaming buffer): they belong to no day yet."""
        qualified = self._qualified(table)
        tp = self.client.get_table(qualified).time_partitioning
        if tp is None or tp.type_ != "DAY" or tp.field != ts_column:
            return None
        project, dataset, name = qualified.split(".")
        rows = self.query(
            f"SELECT partition_id, total_rows, last_modified_time "
            f"FROM `{project}.{dataset}.INFORMATION_SCHEMA.PARTITIONS` "
            "WHERE table_name = @table_name "
            "AND (partition_id = '__UNPARTITIONED__' OR partition_id BETWEEN @first_id AND @last_id)",
            {
                "table_name": name,
                "first_id": first_day.strftime("%Y%m%d"),
                "last_id": last_day.strftime("%Y%m%d"),
            },
        ).to_pylist()
        out: dict[date, tuple[int, datetime]] = {}
        for r in rows:
            n = int(r["total_rows"] or 0)
            if r["partition_id"] == "__UNPARTITIONED__":
                if n:
                    return None
                continue
            out[datetime.strptime(r["partition_id"], "%Y%m%d").date()] = (n, r["last_modified_time"])
        return out

    def point_view(self, view: str, table: str, partition: date, partition_column: str = "dt") -> None:
        """``CREATE OR REPLACE VIEW`` as one DDL query job: the view's definition changes atomically."""
        job = self.client.query(
            self.view_sql(view, table, partition, partition_column), location=self.location
        )
        job.result()

    def write_table(
        self,
        table: str,
        data: pa.Table,
        *,
        mode: WriteMode,
        partition: date | None = None,
        partition_column: str = "dt",
    ) -> int:
        destination, config = self._load_target(table, mode, partition, partition_column)
        buf = io.BytesIO()
        pq.write_table(data, buf, compression="zstd")
        buf.seek(0)
        job = self.client.load_table_from_file(buf, destination, job_config=config, location=self.location)
        job.result(retry=_load_job_retry())
        return data.num_rows

    def _load_target(self, table: str, mode: WriteMode, partition: date | None, partition_column: str):
        """Destination and load config: a date partition is replaced atomically via ``table$YYYYMMDD``."""
        from google.cloud import bigquery

        destination = self._qualified(table)
        config = bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.PARQUET)
        if mode == "replace_partition":
            if partition is None:
                raise ValueError("replace_partition needs a partition date")
            destination = f"{destination}${partition.strftime('%Y%m%d')}"
            config.write_disposition = bigquery.WriteDisposition.WRITE_TRUNCATE
            config.time_partitioning = bigquery.TimePartitioning(
                type_=bigquery.TimePartitioningType.DAY, field=partition_column
            )
        elif mode == "replace":
            config.write_disposition = bigquery.WriteDisposition.WRITE_TRUNCATE
        else:
            config.write_disposition = bigquery.WriteDisposition.WRITE_APPEND
        return destination, config

    def load_parquet(
        self,
        table: str,
        url: str,
        *,
        mode: WriteMode,
        partition: date | None = None,
        partition_column: str = "dt",
    ) -> int:
        destination, config = self._load_target(table, mode, partition, partition_column)
        if url.startswith("gs://"):  # BigQuery reads the bucket itself: nothing passes through this process
            job = self.client.load_table_from_uri(url, destination, job_config=config, location=self.location)
        else:
            with fsspec.open(url, "rb") as f:
                job = self.client.load_table_from_file(
                    f, destination, job_config=config, location=self.location
                )
        job.result(retry=_load_job_retry())
        return int(job.output_rows or 0)
