"""One warehouse interface; DuckDB (embedded default) and BigQuery behind it. Callers never branch on which."""

from __future__ import annotations

from batch.warehouse.base import Warehouse, load_sql
from batch.warehouse.duckdb import DuckDBWarehouse


def open_warehouse(env, *, lock_timeout_s: float | None = None) -> Warehouse:
    """The warehouse named by an environment's config. DuckDB waits up to ``lock_timeout_s`` for its file lock
    (default: $RECO_WAREHOUSE_LOCK_TIMEOUT_S or 60 s)."""
    if env.warehouse.backend == "duckdb":
        return DuckDBWarehouse(env.resolved_duckdb_path(), lock_timeout_s=lock_timeout_s)
    from batch.warehouse.bigquery import BigQueryWarehouse

    return BigQueryWarehouse(
        project=env.warehouse.project, dataset=env.warehouse.dataset, location=env.warehouse.location
    )


__all__ = ["Warehouse", "load_sql", "open_warehouse"]
