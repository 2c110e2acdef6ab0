"""The embedded default: a DuckDB file. BigQuery SQL is transpiled with sqlglot, so the same files run here.

DuckDB lets one process at a time open a file for writing. Opening waits for another process's lock (with
jittered backoff) up to ``lock_timeout_s`` (default ``$RECO_WAREHOUSE_LOCK_TIMEOUT_S`` or 60 s), then fails with
WarehouseLockedError (exit 75, try again later). A file that cannot be opened for another reason (read-only,
not a DuckDB database) is a WarehouseError (exit 65) naming the path; a query on a table that does not exist is
a MissingTableError (exit 65) with the command that loads data.
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
from datetime import date, datetime
from functools import lru_cache
from typing import Any

import duckdb
import fsspec
import pyarrow as pa
import sqlglot

from batch.errors import MissingTableError, WarehouseError, WarehouseLockedError
from batch.warehouse.base import Warehouse, WriteMode, check_table_name

log = logging.getLogger(__name__)

DEFAULT_LOCK_TIMEOUT_S = 60.0
_MISSING_TABLE = re.compile(r"Table with name (\S+) does not exist")


def is_lock_error(e: Exception) -> bool:
    text = str(e).lower()
    return "lock" in text and ("could not set" in text or "conflicting" in text or "being used" in text)


def default_lock_timeout() -> float:
    try:
        return float(os.environ.get("RECO_WAREHOUSE_LOCK_TIMEOUT_S", DEFAULT_LOCK_TIMEOUT_S))
    except ValueError:
        return DEFAULT_LOCK_TIMEOUT_S


def connect(path: str, *, read_only: bool = False, lock_timeout_s: float | None = None):
    """duckdb.connect, waiting for another process's lock; errors name the file."""
    timeout = default_lock_timeout() if lock_timeout_s is None else lock_timeout_s
    deadline = time.monotonic() + timeout
    wait, announced = 0.05, False
    while True:
        try:
            return duckdb.connect(path, read_only=read_only)
        except duckdb.Error as e:
            if not is_lock_error(e):
                raise WarehouseError(
                    f"cannot open the warehouse file {path}: {e}",
                    hint="check the file's permissions and free space; a file that is not a DuckDB database "
                    "(corrupt) must be moved away and its data loaded again (reco data generate or "
                    "reco data import-movielens)",
                ) from None
            if time.monotonic() > deadline:
                raise WarehouseLockedError(
                    f"the warehouse file {path} stayed locked by another process for {timeout:g} s: {e}",
                    hint="another reco command is writing to it; try again when it has finished "
                    "(or raise $RECO_WAREHOUSE_LOCK_TIMEOUT_S)",
                ) from None
            if not announced:
                log.info("waiting for the warehouse lock", extra={"path": path, "timeout_s": timeout})
                announced = True
            time.sleep(wait + random.random() * wait)
            wait = min(wait * 2, 1.0)


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


def to_arrow(relation: duckdb.DuckDBPyRelation) -> pa.Table:
    """A DuckDB relation's rows as an Arrow table (duckdb 2 renamed fetch_arrow_table() to to_arrow_table())."""
    return (getattr(relation, "to_arrow_table", None) or relation.fetch_arrow_table)()


class DuckDBWarehouse(Warehouse):
    name = "duckdb"

    def __init__(self, path: str, *, read_only: bool = False, lock_timeout_s: float | None = None):
        self.path = path
        if path != ":memory:":
            try:
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            except OSError as e:
                raise WarehouseError(f"cannot create the warehouse directory for {path}: {e}") from None
        self.con = connect(path, read_only=read_only, lock_timeout_s=lock_timeout_s)
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
        try:
            relation = self.con.sql(text, params=used or None)
        except duckdb.CatalogException as e:
            m = _MISSING_TABLE.search(str(e))
            if m is None:
                raise
            raise MissingTableError(m.group(1), where=f"the warehouse {self.path}") from None
        if relation is None:  # a statement without a result
            return pa.table({})
        return to_arrow(relation)

    def execute(self, sql: str, params: list | dict | None = None) -> None:
        """Native DuckDB statements (DDL for local tables)."""
        self.con.execute(sql, params or [])

    def table_exists(self, table: str) -> bool:
        name = self._local_name(table)
        rows = self.con.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = 'main' AND table_name = ?", [name]
        ).fetchall()
        return bool(rows)

    def partition_census(
        self, table: str, first_day: date, last_day: date, *, ts_column: str = "ts"
    ) -> dict[date, tuple[int, datetime]] | None:
        """None: a DuckDB table keeps no per-partition row counts or modification times."""
        return None

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
            self._rollback()
            raise
        return int(n)

    def _rollback(self) -> None:
        """ROLLBACK, keeping the original error: after an I/O error (ENOSPC) DuckDB has already aborted the
        transaction, and its "cannot rollback - no transaction is active" used to replace the real cause."""
        try:
            self.con.execute("ROLLBACK")
        except duckdb.Error as e:
            log.warning("warehouse rollback after a failed write", extra={"error": str(e)})

    def point_view(self, view: str, table: str, partition: date, partition_column: str = "dt") -> None:
        """The serving view, replaced in one transaction: readers see the old definition or the new one."""
        ddl = self.view_sql(view, table, partition, partition_column).replace("`", '"')
        self.con.execute("BEGIN TRANSACTION")
        try:
            self.con.execute(ddl)
            self.con.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise

    def view_partition(self, view: str) -> str | None:
        """The date a serving view selects (None when there is no such view): what consumers read now."""
        rows = self.con.execute(
            "SELECT sql FROM duckdb_views() WHERE view_name = ? AND schema_name = 'main'",
            [self._local_name(view)],
        ).fetchall()
        if not rows:
            return None
        m = re.search(r"(\d{4}-\d{2}-\d{2})", rows[0][0])
        return m.group(1) if m else None

    def close(self) -> None:
        self.con.close()
