"""What a detector expects of a metric's value: a range around a centre (shared by every detector)."""

from __future__ import annotations

from dataclasses import dataclass

MAD_SCALE = 1.4826  # median absolute deviation -> standard deviation of a normal distribution


@dataclass
class Expected:
    low: float | None
    high: float | None
    center: float | None
    detector: str

    def contains(self, value: float) -> bool:
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)
