"""Constants shared by the tuning tests."""

from __future__ import annotations

SESSION = "2026-11-21"
# a small space around the small production parameters below, so that trials take a fraction of a second
SPACE = (
    "{als: {factors: {type: int, low: 8, high: 32}, iterations: {type: int, low: 2, high: 6}, "
    "regularization: {type: float, low: 0.001, high: 1.0, log: true}, "
    "weighting: {type: categorical, choices: [none, log, bm25]}}}"
)
SMALL = ["--set", "model.factors=16", "--set", "model.iterations=3", "--set", f"tuning.search_space={SPACE}"]
