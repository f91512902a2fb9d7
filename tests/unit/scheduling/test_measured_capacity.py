"""Measured capacity under `fit`: the probe's answer decides whether a target fits, what
else to evict, how long to wait for memory to come back, and what a model really uses."""

from __future__ import annotations

from llamaswap.fsm.names import ProcessState
from llamaswap.scheduling import FitPolicy, ModelRules, Probing, Resources, SwapFailed

from .fakes import Harness

NEEDS = {"a": {"vram": 8.0}, "b": {"vram": 8.0}, "c": {"vram": 8.0}}
RESOURCES = Resources({"vram": 24.0}, NEEDS)


def harness(recovery: float = 10.0) -> Harness:
    probing = Probing(RESOURCES, frozenset({"vram"}), recovery=recovery, retry=0.5)
    return Harness({m: ModelRules() for m in "abc"}, FitPolicy(RESOURCES), probing=probing)


def test_a_start_waits_for_the_probe_and_goes_ahead_when_it_fits() -> None:
    h = harness()
    rid = h.request("a")
    assert h.effects.swaps == [("a", ())]
    assert h.effects.probes == ["a"] and h.effects.starts == [], "no start before the probe"
    h.scheduler.probed("a", {"vram": 20.0}, h.now)
    assert h.effects.starts == ["a"]
    h.ready("a")
    assert h.effects.grants == [rid]
    assert h.effects.probes == ["a", "a"], "once ready, measure what it took"
    h.scheduler.probed("a", {"vram": 9.5}, h.now)
    assert h.effects.measured == {"a": {"vram": 10.5}}


def test_a_learned_need_larger_than_declared_decides_from_then_on() -> None:
    h = harness()
    rid = h.request("a")
    h.scheduler.probed("a", {"vram": 24.0}, h.now)
    h.ready("a")
    h.scheduler.probed("a", {"vram": 4.0}, h.now)  # it took 20, not the 8 it declared
    h.finish(rid)
    h.request("b")
    assert h.effects.swaps[-1] == ("b", ("a",)), "20 + 8 > 24: a must go"


def test_when_the_probe_says_it_does_not_fit_an_idle_model_goes_too() -> None:
    h = harness()
    for model in ("a", "b"):
        rid = h.request(model)
        h.scheduler.probed(model, {"vram": 24.0}, h.now)
        h.ready(model)
        h.scheduler.probed(model, {"vram": 24.0}, h.now)  # learned: 0 (declared stays)
        h.finish(rid)
        h.now += 1
    h.request("c")  # declared: 8 + 8 + 8 = 24 fits; another program holds memory
    assert h.effects.swaps[-1] == ("c", ())
    h.scheduler.probed("c", {"vram": 3.0}, h.now)
    assert h.effects.stops == [("a", "evicted for c: the probe says it does not fit")]
    assert h.effects.starts.count("c") == 0
    h.announce("a", ProcessState.STOPPING)
    h.stopped("a")
    assert h.effects.probes[-1] == "c", "probe again once a has stopped"
    h.scheduler.probed("c", {"vram": 11.0}, h.now)
    assert h.effects.starts[-1] == "c"


def test_it_waits_a_while_for_memory_to_come_back_then_gives_up_saying_why() -> None:
    h = harness(recovery=2.0)
    rid = h.request("a")
    h.scheduler.probed("a", {"vram": 5.0}, h.now)  # nothing to evict: wait
    assert h.effects.starts == [] and h.scheduler.next_deadline() == h.now + 0.5
    h.advance(0.5)
    assert h.effects.probes == ["a", "a"]
    h.scheduler.probed("a", {"vram": 6.0}, h.now)
    h.advance(0.5)
    h.advance(1.1)
    h.scheduler.probed("a", {"vram": 6.0}, h.now)
    [(rejected, error)] = h.effects.rejects
    assert rejected == rid and isinstance(error, SwapFailed)
    assert "[a] does not fit: it needs vram 8, the probe finds 6 free" in str(error)


def test_memory_that_comes_back_in_time_lets_the_start_go_ahead() -> None:
    h = harness(recovery=5.0)
    h.request("a")
    h.scheduler.probed("a", {"vram": 5.0}, h.now)
    h.advance(0.5)
    h.scheduler.probed("a", {"vram": 23.0}, h.now)
    assert h.effects.starts == ["a"]


def test_a_failed_probe_falls_back_to_the_declared_figures() -> None:
    h = harness()
    h.request("a")
    h.scheduler.probed("a", None, h.now)
    assert h.effects.starts == ["a"]
    h.ready("a")
    assert h.effects.probes == ["a"], "nothing to learn from: no figure before the start"
