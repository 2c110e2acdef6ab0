"""The warehouse interface. SQL is written once, in BigQuery Standard SQL with named ``@parameters``.

Table names cannot be query parameters in BigQuery, so SQL files name tables as ``{events_table}`` placeholders
that the warehouse fills with a quoted, validated reference; everything else is a real query parameter. A
placeholder may also be filled with a ``Relation`` (a pipeline's own SELECT over its tables, e.g.
config/sql/creators_events.sql): it goes in as a parenthesized subquery, its own placeholders filled the same way.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from importlib import resources
from typing import Any, Literal

import pyarrow as pa

_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*){0,2}$")

WriteMode = Literal["replace_partition", "append", "replace"]


def load_sql(name: str) -> str:
    """A SQL file shipped in ``batch/sql``; a line ``--@include NAME`` is replaced by the file NAME.sql."""
    text = resources.files("batch.sql").joinpath(f"{name}.sql").read_text()
    return re.sub(r"^--@include (\w+)\s*$", lambda m: load_sql(m.group(1)), text, flags=re.M)


def check_table_name(name: str) -> str:
    if not _TABLE.match(name):
        raise ValueError(f"not a table name: {name!r}")
    return name


@dataclass(frozen=True)
class Relation:
    """A SELECT standing where a SQL file names a table; ``tables`` fill its own placeholders."""

    sql: str
    tables: Mapping[str, str] = field(default_factory=dict)
    origin: str = ""  # where the SQL came from (a file path), for errors


class Warehouse(ABC):
    """Query with BigQuery SQL; load Arrow tables, replacing one date partition atomically."""

    name: str

    @abstractmethod
    def table_ref(self, table: str) -> str:
        """A BigQuery-syntax reference (backticked) for a configured table name."""

    def render(self, sql: str, tables: Mapping[str, str | Relation]) -> str:
        refs = {
            k: self._relation_ref(v) if isinstance(v, Relation) else self.table_ref(check_table_name(v))
            for k, v in tables.items()
        }
        return sql.format(**refs)

    def _relation_ref(self, relation: Relation) -> str:
        try:
            body = self.render(relation.sql, relation.tables)
        except KeyError as e:
            raise ValueError(
                f"{relation.origin or 'SQL'}: no table for placeholder {{{e.args[0]}}}"
            ) from None
        # newlines: a trailing -- comment in the file must not swallow the closing parenthesis
        return "(\n" + body.strip().rstrip(";") + "\n)"

    @abstractmethod
    def query(
        self,
        sql: str,
        params: dict[str, Any] | None = None,
        *,
        tables: Mapping[str, str | Relation] | None = None,
    ) -> pa.Table:
        """Run one BigQuery-dialect statement and return its rows."""

    def query_file(
        self, name: str, params: dict[str, Any] | None = None, *, tables: Mapping[str, str | Relation]
    ) -> pa.Table:
        return self.query(load_sql(name), params, tables=tables)

    @abstractmethod
    def write_table(
        self,
        table: str,
        data: pa.Table,
        *,
        mode: WriteMode,
        partition: date | None = None,
        partition_column: str = "dt",
    ) -> int:
        """Write rows; ``replace_partition`` swaps one date partition atomically. Returns rows written."""

    @abstractmethod
    def load_parquet(
        self,
        table: str,
        url: str,
        *,
        mode: WriteMode,
        partition: date | None = None,
        partition_column: str = "dt",
    ) -> int:
        """Load a Parquet file (fsspec URL) without holding it in memory; modes as ``write_table``."""

    @abstractmethod
    def table_exists(self, table: str) -> bool: ...

    @abstractmethod
    def partition_census(
        self, table: str, first_day: date, last_day: date, *, ts_column: str = "ts"
    ) -> dict[date, tuple[int, datetime]] | None:
        """Per UTC day partition of ``table`` from ``first_day`` to ``last_day``: (rows, last modification), from
        the warehouse's metadata, no rows read; days without a partition are absent. None when the table has no
        usable day partitions on ``ts_column`` (the caller then counts the rows itself)."""

    @abstractmethod
    def point_view(self, view: str, table: str, partition: date, partition_column: str = "dt") -> None:
        """Create or replace ``view`` as the rows of one date partition of ``table``: the serving view that
        consumers read, re-pointed by publish and rollback (BigQuery: a ``CREATE OR REPLACE VIEW`` job)."""

    def view_sql(self, view: str, table: str, partition: date, partition_column: str = "dt") -> str:
        """The DDL of a serving view, in BigQuery syntax (DuckDB transpiles it)."""
        if not isinstance(partition, date):
            raise ValueError(f"not a date: {partition!r}")
        check_table_name(partition_column)
        return (
            f"CREATE OR REPLACE VIEW {self.table_ref(view)} AS SELECT * FROM {self.table_ref(table)} "
            f"WHERE `{partition_column}` = DATE '{partition.isoformat()}'"
        )

    def close(self) -> None:  # noqa: B027 - optional for backends without a connection
        pass

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
