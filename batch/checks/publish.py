"""The publish check: decides whether an export may become "latest", from the figures the export step computed.

It fails when the export is empty, has a duplicate (user, item), has a user whose ranks are not 1..k, covers too
few of the users the model knows, or when its row or user count moved more than the configured share away from
the previous publish (skipped on a pipeline's first publish). A failed check leaves the previous publish latest.
"""

from __future__ import annotations

from batch.checks.data import CheckResult
from batch.config import PublishCheckConfig


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


def as_results(failures: list[str], stats: dict) -> list[CheckResult]:
    """The verdict as one check result (the publish check always blocks: severity fail)."""
    return [
        CheckResult(
            "publish",
            "fail" if failures else "pass",
            stats.get("user_coverage"),
            "no failure",
            "; ".join(failures) if failures else "the export may be published",
            "fail",
            {"failures": failures},
        )
    ]
