"""Wait-time summaries for simulation reports: nearest-rank percentiles, no interpolation.

Nearest rank keeps every reported number a wait some request really had, so a p95 of
30 s means a request waited 30 s, not a blend of two.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


def milliseconds(value: float | None) -> float | None:
    """Rounded for output: traces are in milliseconds, the rest is float noise."""
    return None if value is None else round(value, 3)


def percentile(values: Iterable[float], q: float) -> float | None:
    """The nearest-rank `q`-th percentile (0 < q <= 100) of `values`; None when empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class WaitSummary:
    """How long granted requests waited between arrival and grant."""

    count: int
    p50: float | None
    p95: float | None
    max: float | None

    @classmethod
    def of(cls, waits: Iterable[float]) -> WaitSummary:
        values = list(waits)
        return cls(
            len(values),
            percentile(values, 50),
            percentile(values, 95),
            max(values) if values else None,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "p50": milliseconds(self.p50),
            "p95": milliseconds(self.p95),
            "max": milliseconds(self.max),
        }
