"""The embedded default: a DuckDB file. BigQuery SQL is transpiled with sqlglot, so the same files run here."""

from __future__ import annotations

import os
from datetime import date
from functools import lru_cache
from typing import Any

import duckdb
import fsspec
import pyarrow as pa
import sqlglot

from batch.warehouse.base import Warehouse, WriteMode, check_table_name


def register_fsspec(con: duckdb.DuckDBPyConnection, url: str) -> None:
    """Let DuckDB read ``gs://`` (or any fsspec URL) through fsspec; local paths need nothing."""
    if "://" in url and not url.startswith("file://"):
        fs = fsspec.filesystem(url.split("://", 1)[0])
        names = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
        if not set(names) & set(con.list_filesystems()):  # registering twice is an error in DuckDB
            con.register_filesystem(fs)


@lru_cache(maxsize=256)
def transpile(sql: str) -> str:
    """BigQuery Standard SQL -> DuckDB SQL (``@name`` parameters become ``$name``)."""
    statements = sqlglot.transpile(sql, read="bigquery", write="duckdb")
    if len(statements) != 1:
        raise ValueError(f"expected one SQL statement, got {len(statements)}")
    return statements[0]


class DuckDBWarehouse(Warehouse):
    name = "duckdb"

    def __init__(self, path: str, *, read_only: bool = False):
        self.path = path
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.con = duckdb.connect(path, read_only=read_only)
        self.con.execute("SET TimeZone = 'UTC'")

    def table_ref(self, table: str) -> str:
        # Dataset qualifiers are a BigQuery concept; locally every table lives in the main schema.
        return f"`{check_table_name(table).split('.')[-1]}`"

    def _local_name(self, table: str) -> str:
        return check_table_name(table).split(".")[-1]

    def query(
        self, sql: str, params: dict[str, Any] | None = None, *, tables: dict[str, str] | None = None
    ) -> pa.Table:
        text = transpile(self.render(sql, tables or {}))
        used = {k: v for k, v in (params or {}).items() if f"${k}" in text}
        relation = self.con.sql(text, params=used or None)
        if relation is None:  # a statement without a result
            return pa.table({})
        # duckdb 2 renamed fetch_arrow_table() to to_arrow_table()
        return (getattr(relation, "to_arrow_table", None) or relation.fetch_arrow_table)()

    def execute(self, sql: str, params: list | dict | None = None) -> None:
        """Native DuckDB statements (DDL for local tables)."""
        self.con.execute(sql, params or [])

    def table_exists(self, table: str) -> bool:
        name = self._local_name(table)
        rows = self.con.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = 'main' AND table_name = ?", [name]
        ).fetchall()
        return bool(rows)

    def write_table(
        self,
        table: str,
        data: pa.Table,
        *,
        mode: WriteMode,
        partition: date | None = None,
        partition_column: str = "dt",
    ) -> int:
        self.con.register("_incoming", data)
        try:
            return self._write_from("_incoming", table, mode, partition, partition_column)
        finally:
            self.con.unregister("_incoming")

    def load_parquet(
        self,
        table: str,
        url: str,
        *,
        mode: WriteMode,
        partition: date | None = None,
        partition_column: str = "dt",
    ) -> int:
        register_fsspec(self.con, url)
        self.con.read_parquet(url).create_view("_incoming", replace=True)
        try:
            return self._write_from("_incoming", table, mode, partition, partition_column)
        finally:
            self.con.execute("DROP VIEW IF EXISTS _incoming")

    def _write_from(
        self, source: str, table: str, mode: WriteMode, partition: date | None, partition_column: str
    ) -> int:
        """One transaction: readers see the old partition or the new one, never neither."""
        name = self._local_name(table)
        self.con.execute("BEGIN TRANSACTION")
        try:
            if mode == "replace" or not self.table_exists(name):
                self.con.execute(f'CREATE OR REPLACE TABLE "{name}" AS SELECT * FROM {source} LIMIT 0')
            if mode == "replace_partition":
                if partition is None:
                    raise ValueError("replace_partition needs a partition date")
                self.con.execute(f'DELETE FROM "{name}" WHERE "{partition_column}" = ?', [partition])
            n = self.con.execute(f'INSERT INTO "{name}" BY NAME SELECT * FROM {source}').fetchone()[0]
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        return int(n)

    def close(self) -> None:
        self.con.close()
