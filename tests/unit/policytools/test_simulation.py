"""The discrete-event simulation: the real scheduler on a virtual clock."""

from __future__ import annotations

import pytest

from llamaswap.policytools import Seconds, TraceRequest, simulate
from llamaswap.policytools.simulation import PolicyUnavailable
from llamaswap.policytools.trace import synthetic_trace

from .helpers import THREE, config

TWO_FIT = """
resources: {vram: 24}
models:
  a: {cmd: "srv --port ${PORT}", resources: {vram: 10}, aliases: [alpha]}
  b: {cmd: "srv --port ${PORT}", resources: {vram: 10}}
"""


def together(*models: str, duration: float = 2.0) -> list[TraceRequest]:
    return [TraceRequest(0.0, m, duration) for m in models]


def test_three_swaps_for_abcabc_arriving_together_under_the_default_policy() -> None:
    result = simulate(config(THREE), together(*"ABCABC"))
    assert result.swaps == 3
    assert result.loads == {"A": 1, "B": 1, "C": 1}
    assert result.served() == 6 and result.rejected() == 0 and not result.unresolved()


def test_load_and_stop_seconds_set_every_wait() -> None:
    result = simulate(
        config(THREE), together(*"ABCABC"), load_seconds={"C": 20}, stop_seconds=1
    )  # A, B load in the default 10 s
    # A: loads 0-10, serves 10-12; B: A stops 12-13, loads 13-23; C: 25-26, 26-46
    assert [r.wait for r in result.requests] == [10.0, 23.0, 46.0, 10.0, 23.0, 46.0]
    assert result.loading_seconds == 40.0 and result.stopping_seconds == 2.0
    assert result.end == 48.0
    assert result.waits("C").p50 == 46.0 and result.waits().max == 46.0


def test_seconds_accept_a_default_with_overrides() -> None:
    result = simulate(
        config(THREE), together("A", "B"), load_seconds=Seconds(5.0, {"B": 1.0}), stop_seconds=0
    )
    assert [r.wait for r in result.requests] == [5.0, 8.0]


def test_simulation_is_reproducible_for_a_seed() -> None:
    models = ["A", "B", "C"]

    def run(seed: int) -> tuple[int, float, list[float | None]]:
        trace = synthetic_trace(200, models, zipf=1.2, seed=seed, rate=0.2, mean_duration=5)
        result = simulate(config(THREE), trace, load_seconds=4, stop_seconds=1)
        return result.swaps, result.loading_seconds, [r.wait for r in result.requests]

    assert run(11) == run(11)
    assert run(11) != run(12)


def test_the_fit_policy_keeps_what_fits_and_swaps_less() -> None:
    trace = [TraceRequest(float(t), m, 1.0) for t, m in enumerate("ababab", start=0)]
    trace = [TraceRequest(r.t * 30, r.model, r.duration) for r in trace]
    assert simulate(config(TWO_FIT), trace, policy="group").swaps == 6
    fit = simulate(config(TWO_FIT), trace, policy="fit")
    assert fit.swaps == 2 and fit.co_running_sets == {frozenset({"a", "b"})}


def test_policies_the_config_cannot_run_are_refused() -> None:
    with pytest.raises(PolicyUnavailable, match="needs a matrix"):
        simulate(config(THREE), together("A"), policy="matrix")
    with pytest.raises(PolicyUnavailable, match="needs top-level resources"):
        simulate(config(THREE), together("A"), policy="fit")
    with pytest.raises(PolicyUnavailable, match="unknown policy"):
        simulate(config(THREE), together("A"), policy="lru")


def test_requests_past_max_wait_hit_the_starvation_bound() -> None:
    text = THREE + "routing:\n  scheduler:\n    settings:\n      fifo: {maxWaitSeconds: 15}\n"
    result = simulate(config(text), together(*"ABC"), load_seconds=6, stop_seconds=0)
    # A waits 6, B 6+2+6 = 14, C 14+2+6 = 22 > 15
    assert [r.wait for r in result.requests] == [6.0, 14.0, 22.0]
    assert [r.id for r in result.starved()] == [3]


def test_concurrency_limit_rejections_are_counted_by_code() -> None:
    text = THREE.replace(
        'A: {cmd: "srv --port ${PORT}"}', 'A: {cmd: "x ${PORT}", concurrencyLimit: 1}'
    )
    result = simulate(config(text), together("A", "A", "A", "nope"))
    assert result.served() == 1 and result.rejected() == 3
    assert result.rejections() == {"concurrency_limit": 2, "not_found": 1}


def test_aliases_in_the_trace_reach_their_model() -> None:
    result = simulate(config(TWO_FIT), together("alpha"))
    assert result.requests[0].model == "a" and result.served() == 1


def test_ttl_unloads_on_the_virtual_clock_and_a_request_waits_for_the_stop() -> None:
    text = 'models:\n  a: {cmd: "srv --port ${PORT}", ttl: 1}\n'
    trace = [TraceRequest(0.0, "a", 0.0), TraceRequest(3.0, "a", 0.0)]
    result = simulate(config(text), trace, load_seconds=1, stop_seconds=5)
    # ready at 1, idle until the ttl stop at 2, stopped at 7, reloaded by 8
    assert [(s.state, s.start, s.end) for s in result.spans[:4]] == [
        ("starting", 0.0, 1.0),
        ("ready", 1.0, 2.0),
        ("stopping", 2.0, 7.0),
        ("starting", 7.0, 8.0),
    ]
    assert result.requests[1].wait == 5.0 and result.loads == {"a": 2}


def test_evictees_stop_in_parallel_before_the_target_loads() -> None:
    text = """
    models:
      a: {cmd: "srv --port ${PORT}"}
      b: {cmd: "srv --port ${PORT}"}
      c: {cmd: "srv --port ${PORT}"}
    groups:
      pair: {swap: false, members: [a, b]}
    """
    trace = [*together("a", "b", duration=1), TraceRequest(5.0, "c", 1)]
    result = simulate(config(text), trace, load_seconds=1, stop_seconds={"a": 2, "b": 3})
    assert result.swaps == 3 and result.evictions == 2
    # a and b stop 5-7 and 5-8; c loads 8-9
    assert result.requests[2].wait == 4.0
