"""The publish check: decides whether an export may become "latest".

It fails when the export is empty, has a duplicate (user, item), has a user whose ranks are not 1..k, covers too
few of the users the model knows, or when its row or user count moved more than the configured share away from
the previous publish (skipped on a pipeline's first publish). A failed check leaves the previous publish latest.
"""

from __future__ import annotations

from batch.config import PublishCheckConfig

# Three passes over the export (per user, per item, overall), each a DuckDB scan of the Parquet files: memory
# stays bounded whatever the row count. Besides the check's own figures it yields the ones the metric store keeps
# (distinct items, top item share, personal share, median personal score), so nothing reads the export again.
STATS_SQL = """
WITH t AS (SELECT user_id, item_id, rank, score, source FROM read_parquet($files)),
per_user AS (
  SELECT user_id, COUNT(*) AS n, MIN(rank) AS lo, MAX(rank) AS hi, COUNT(DISTINCT rank) AS ranks,
         COUNT(DISTINCT item_id) AS items, COUNT(item_id) AS with_item
  FROM t GROUP BY user_id),
per_item AS (SELECT item_id, COUNT(*) AS c FROM t WHERE item_id IS NOT NULL GROUP BY item_id),
overall AS (
  SELECT COUNT(*) AS rows, COUNT(*) FILTER (WHERE user_id IS NULL OR item_id IS NULL) AS null_ids,
         AVG(CASE WHEN source = 'personal' THEN 1.0 ELSE 0.0 END) AS personal_share,
         MEDIAN(score) FILTER (WHERE source = 'personal') AS score_median_personal
  FROM t)
SELECT
  overall.rows,
  (SELECT COUNT(user_id) FROM per_user) AS users,
  (SELECT COALESCE(SUM(with_item - items), 0) FROM per_user WHERE user_id IS NOT NULL) AS duplicate_pairs,
  (SELECT COUNT(*) FROM per_user WHERE user_id IS NOT NULL AND (lo <> 1 OR hi <> n OR ranks <> n)) AS users_bad_ranks,
  overall.null_ids,
  (SELECT COUNT(*) FROM per_item) AS distinct_items,
  (SELECT COALESCE(MAX(c), 0) FROM per_item) AS top_item_rows,
  overall.personal_share,
  overall.score_median_personal
FROM overall
"""
COUNTS = (
    "rows",
    "users",
    "duplicate_pairs",
    "users_bad_ranks",
    "null_ids",
    "distinct_items",
    "top_item_rows",
)


def export_stats(con, files: list[str]) -> dict:
    """The figures of an export, computed by DuckDB over its Parquet files.

    ``duplicate_pairs`` counts the rows beyond the first of each (user, item).
    """
    cursor = con.execute(STATS_SQL, {"files": files})
    names = [d[0] for d in cursor.description]
    row = dict(zip(names, cursor.fetchone(), strict=True))
    out = {k: int(row[k] or 0) for k in COUNTS}
    out["top_item_share"] = out["top_item_rows"] / out["rows"] if out["rows"] else 0.0
    out["personal_share"] = float(row["personal_share"] or 0.0)
    median = row["score_median_personal"]
    out["score_median_personal"] = None if median is None else float(median)
    return out


def _change(new: int, old: int) -> float:
    return abs(new - old) / old if old else 0.0


def evaluate(stats: dict, expected_users: int, previous: dict | None, cfg: PublishCheckConfig) -> list[str]:
    """The reasons not to publish; an empty list means publish."""
    failures = []
    if stats["rows"] < cfg.min_rows:
        failures.append(f"export has {stats['rows']} rows, fewer than min_rows={cfg.min_rows}")
    if stats["duplicate_pairs"]:
        failures.append(f"{stats['duplicate_pairs']} duplicate (user, item) rows")
    if stats["users_bad_ranks"]:
        failures.append(f"{stats['users_bad_ranks']} users whose ranks are not contiguous from 1")
    if stats["null_ids"]:
        failures.append(f"{stats['null_ids']} rows with a null user or item id")
    coverage = stats["users"] / expected_users if expected_users else 0.0
    stats["user_coverage"] = round(coverage, 6)
    if coverage < cfg.min_user_coverage:
        failures.append(
            f"user coverage {coverage:.1%} ({stats['users']} of {expected_users} users) is below "
            f"min_user_coverage={cfg.min_user_coverage:.0%}"
        )
    if previous:
        prev = previous.get("stats", {})
        if prev.get("rows") and _change(stats["rows"], prev["rows"]) > cfg.max_row_change:
            failures.append(
                f"row count {stats['rows']} moved {_change(stats['rows'], prev['rows']):.0%} from the previous "
                f"publish ({prev['rows']} on {previous['dt']}), more than max_row_change={cfg.max_row_change:.0%}"
            )
        if prev.get("users") and _change(stats["users"], prev["users"]) > cfg.max_user_change:
            failures.append(
                f"user count {stats['users']} moved {_change(stats['users'], prev['users']):.0%} from the previous "
                f"publish ({prev['users']} on {previous['dt']}), more than max_user_change={cfg.max_user_change:.0%}"
            )
    return failures
