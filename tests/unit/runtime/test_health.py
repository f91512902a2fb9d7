"""The health-probe schedule: fast while small models come up, then backing off."""

from __future__ import annotations

import itertools

import pytest

from llamaswap.runtime.health import FAST_INTERVAL, MAX_INTERVAL, backoff


def test_probes_every_10_ms_for_two_seconds_then_back_off_to_250_ms() -> None:
    pauses = backoff()
    fast = [p for p in pauses if p == FAST_INTERVAL]
    assert sum(fast) == pytest.approx(2.0)
    assert pauses[: len(fast)] == fast, "the fast phase comes first"
    slow = pauses[len(fast) :]
    assert slow == sorted(slow) and slow[-1] == MAX_INTERVAL
    assert all(b <= 2 * a for a, b in itertools.pairwise(slow))
