"""One warehouse interface; DuckDB (embedded default) and BigQuery behind it. Callers never branch on which."""

from __future__ import annotations

from batch.warehouse.base import Relation, Warehouse, load_sql


def open_warehouse(env) -> Warehouse:
    """The warehouse named by an environment's config."""
    if env.warehouse.backend == "duckdb":
        from batch.warehouse.duckdb import DuckDBWarehouse

        return DuckDBWarehouse(env.resolved_duckdb_path())
    from batch.warehouse.bigquery import BigQueryWarehouse

    return BigQueryWarehouse(
        project=env.warehouse.project, dataset=env.warehouse.dataset, location=env.warehouse.location
    )


__all__ = ["Relation", "Warehouse", "load_sql", "open_warehouse"]
