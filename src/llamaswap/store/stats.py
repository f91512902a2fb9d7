"""Histograms of prompt and generation speeds for `/api/metrics/stats` (llama-swap's
`calculateHistogramData`: Sturges' rule clamped to 5-20 bins, linear percentiles)."""

from __future__ import annotations

import math
from typing import Any

MIN_BINS = 5
MAX_BINS = 20


def percentile(ordered: list[float], p: float) -> float:
    """Linear interpolation between the closest ranks of a sorted list."""
    if not ordered:
        return 0.0
    if len(ordered) == 1:
        return ordered[0]
    rank = (p / 100) * (len(ordered) - 1)
    lower, upper = math.floor(rank), math.ceil(rank)
    return ordered[lower] + (rank - lower) * (ordered[upper] - ordered[lower])


def histogram(values: list[float]) -> dict[str, Any] | None:
    """{bins, min, max, binSize, p50, p95, p99}, or None (JSON null) without values."""
    if not values:
        return None
    ordered = sorted(values)
    low, high = ordered[0], ordered[-1]
    shape = {
        "min": low,
        "max": high,
        "p50": percentile(ordered, 50),
        "p95": percentile(ordered, 95),
        "p99": percentile(ordered, 99),
    }
    if low == high:
        return {"bins": [len(values)], **shape, "binSize": 0.0}
    count = min(MAX_BINS, max(MIN_BINS, math.ceil(math.log2(len(values))) + 1))
    size = (high - low) / count
    bins = [0] * count
    for value in values:
        bins[min(int((value - low) // size), count - 1)] += 1
    return {"bins": bins, **shape, "binSize": size}
