"""Per-request keep-alive (Ollama's `keep_alive`, LM Studio's `ttl`) and models that are
never swapped out (`swappable: false`)."""

from __future__ import annotations

from llamaswap.fsm.names import ProcessState
from llamaswap.scheduling import (
    FitPolicy,
    Group,
    GroupPolicy,
    ModelRules,
    Pinned,
    Request,
    Resources,
    Unschedulable,
)

from .fakes import Harness


def request(h: Harness, model: str, keep_alive: float | None) -> int:
    h._next_id += 1  # the harness's own counter, so ids stay unique
    h.scheduler.submit(Request(h._next_id, model, h.now, keep_alive=keep_alive), h.now)
    return h._next_id


def test_keep_alive_sets_the_idle_time_from_the_end_of_the_request() -> None:
    h = Harness({"a": ModelRules(ttl=300)})
    h.ready("a")
    rid = request(h, "a", 5.0)
    h.advance(10)
    assert h.effects.stops == [], "no expiry while the request runs"
    h.finish(rid)
    h.advance(4.9)
    assert h.effects.stops == []
    h.advance(0.2)
    assert h.effects.stops == [("a", "ttl")]


def test_keep_alive_zero_unloads_as_soon_as_the_model_is_idle() -> None:
    h = Harness(["a"])  # no ttl configured
    h.ready("a")
    rid = request(h, "a", 0.0)
    h.finish(rid)
    assert h.scheduler.next_deadline() == h.now
    h.advance(0)
    assert h.effects.stops == [("a", "ttl")]


def test_a_negative_keep_alive_keeps_the_model_until_a_later_request_says_otherwise() -> None:
    h = Harness({"a": ModelRules(ttl=5)})
    h.ready("a")
    h.finish(request(h, "a", -1.0))
    h.advance(1000)
    assert h.effects.stops == []
    h.finish(request(h, "a", None))  # back to the configured ttl
    h.advance(5.1)
    assert h.effects.stops == [("a", "ttl")]


def test_the_last_finished_request_sets_the_keep_alive() -> None:
    h = Harness(["a"])
    h.ready("a")
    long, short = request(h, "a", 100.0), request(h, "a", 1.0)
    h.finish(short)
    h.advance(50)
    assert h.effects.stops == [], "a request is still in flight"
    h.finish(long)
    h.advance(99)
    assert h.effects.stops == []
    h.advance(2)
    assert h.effects.stops == [("a", "ttl")]


def test_a_keep_alive_is_forgotten_once_the_model_stops() -> None:
    h = Harness({"a": ModelRules(ttl=5)})
    h.ready("a")
    h.finish(request(h, "a", -1.0))
    h.scheduler.unload(["a"], h.now)
    h.stopped("a")
    rid = h.request("a")
    h.complete_swap("a")
    h.finish(rid)
    h.advance(5.1)
    assert h.effects.stops[-1] == ("a", "ttl")


def pinned_groups() -> Pinned:
    return Pinned(GroupPolicy([Group("(default)", ("a", "b"))]), {"a"})


def test_a_model_that_is_not_swappable_is_never_evicted() -> None:
    h = Harness({"a": ModelRules(swappable=False), "b": ModelRules()}, pinned_groups())
    h.ready("a")
    rid = h.request("b")
    [(rejected, error)] = h.effects.rejects
    assert rejected == rid and isinstance(error, Unschedulable)
    assert error.code == "not_swappable" and error.status == 503
    assert "a has swappable: false" in str(error)
    assert h.effects.swaps == [] and h.effects.stops == []


def test_a_model_that_is_not_swappable_has_no_ttl_but_obeys_keep_alive_zero() -> None:
    h = Harness({"a": ModelRules(ttl=5, swappable=False)}, Pinned(GroupPolicy([]), {"a"}))
    h.ready("a")
    h.finish(h.request("a"))
    h.advance(1000)
    assert h.effects.stops == []
    h.finish(request(h, "a", 0.0))  # an explicit unload from the client
    h.advance(0)
    assert h.effects.stops == [("a", "ttl")]


def test_unload_stops_a_model_that_is_not_swappable() -> None:
    h = Harness({"a": ModelRules(swappable=False), "b": ModelRules()}, pinned_groups())
    h.ready("a")
    h.scheduler.unload(["a"], h.now)
    assert h.effects.stops == [("a", "unload")]
    h.announce("a", ProcessState.STOPPING)
    h.stopped("a")
    rid = h.request("b")
    h.complete_swap("b")
    assert h.effects.grants == [rid]


def test_fit_evicts_others_around_a_model_that_is_not_swappable() -> None:
    resources = Resources({"vram": 10}, {"a": {"vram": 4}, "b": {"vram": 4}, "c": {"vram": 4}})
    policy = Pinned(FitPolicy(resources, {"a"}), {"a"})
    h = Harness({m: ModelRules(swappable=m != "a") for m in "abc"}, policy)
    h.ready("a", "b")
    h.request("c")
    assert h.effects.swaps == [("c", ("b",))], "b goes, although a was used less recently"
