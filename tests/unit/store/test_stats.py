"""Speed histograms (llama-swap's calculateHistogramData)."""

from __future__ import annotations

from llamaswap.store.stats import histogram, percentile


def test_no_values_is_null() -> None:
    assert histogram([]) is None


def test_one_distinct_value_is_one_bin() -> None:
    assert histogram([5.0, 5.0]) == {
        "bins": [2],
        "min": 5.0,
        "max": 5.0,
        "p50": 5.0,
        "p95": 5.0,
        "p99": 5.0,
        "binSize": 0.0,
    }


def test_bins_follow_sturges_within_five_to_twenty() -> None:
    small = histogram([1.0, 2.0, 3.0])
    assert small is not None and len(small["bins"]) == 5 and sum(small["bins"]) == 3
    big = histogram([float(i) for i in range(100_000)])
    assert big is not None and len(big["bins"]) == 18
    assert big["bins"][-1] > 0  # the maximum lands in the last bin


def test_percentiles_interpolate() -> None:
    assert percentile([10.0, 20.0], 50) == 15.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 95) == 4.8
