"""The FIFO scheduler's decision tree, ported from llama-swap's scheduler tests (§6.3)."""

from __future__ import annotations

import pytest

from llamaswap.fsm.names import ProcessState, RouterState
from llamaswap.scheduling import (
    Group,
    GroupPolicy,
    MatrixAlternative,
    MatrixPolicy,
    ModelNotFound,
    ModelNotLoaded,
    ModelRules,
    ModelUnloaded,
    ReloadInProgress,
    ShuttingDown,
    SwapFailed,
    TooManyRequests,
)

from .fakes import Harness


def nonexclusive(*models: str) -> GroupPolicy:
    """Every model in its own non-exclusive group: nothing evicts anything."""
    return GroupPolicy([Group(m, (m,), swap=True, exclusive=False) for m in models])


def test_fast_path_serves_a_ready_model_without_a_swap() -> None:
    h = Harness(["a"])
    h.ready("a")
    rid = h.request("a")
    assert h.effects.grants == [rid]
    assert h.effects.swaps == []
    assert h.scheduler.in_flight("a") == 1


def test_grant_carries_the_model_priority() -> None:
    h = Harness({"a": ModelRules(priority=7)})
    h.ready("a")
    h.request("a")
    assert h.effects.granted_requests[0].priority == 7


def test_unknown_model_is_rejected_without_a_swap() -> None:
    h = Harness(["a"])
    rid = h.request("nope")
    [(rejected, error)] = h.effects.rejects
    assert rejected == rid and isinstance(error, ModelNotFound)
    assert h.effects.swaps == [] and h.effects.grants == []


def test_on_demand_start_then_serve() -> None:
    h = Harness(["a"])
    rid = h.request("a")
    assert h.effects.swaps == [("a", ())]
    assert h.effects.grants == []
    h.complete_swap("a")
    assert h.effects.grants == [rid]


def test_concurrent_requests_join_one_swap() -> None:
    h = Harness(["a"])
    ids = [h.request("a") for _ in range(3)]
    assert h.effects.swaps == [("a", ())]
    h.complete_swap("a")
    assert h.effects.grants == ids
    assert h.scheduler.in_flight("a") == 3


def test_swap_failure_fails_every_waiter() -> None:
    h = Harness(["a"])
    ids = [h.request("a"), h.request("a")]
    h.complete_swap("a", error="boom")
    assert h.effects.rejected_ids() == ids
    assert all(isinstance(e, SwapFailed) and "boom" in str(e) for _, e in h.effects.rejects)
    assert h.scheduler.waiting_count() == 0


def test_eviction_waits_for_the_swap_and_for_in_flight_requests() -> None:
    h = Harness(["a", "b"])
    ra = h.request("a")
    rb = h.request("b")  # collides with a's swap
    assert h.effects.swaps == [("a", ())]
    h.complete_swap("a")
    assert h.effects.grants == [ra]
    assert h.effects.swaps == [("a", ())], "b must wait for a's request"
    h.finish(ra)
    assert h.effects.swaps == [("a", ()), ("b", ("a",))]
    h.complete_swap("b")
    assert h.effects.grants == [ra, rb]


def test_disjoint_swaps_run_in_parallel() -> None:
    h = Harness(["a", "b"], policy=nonexclusive("a", "b"))
    h.request("a")
    h.request("b")
    assert h.effects.swaps == [("a", ()), ("b", ())]


def test_overlapping_evict_sets_do_not_run_in_parallel() -> None:
    # x runs; a and b can each run with the other but not with x.
    policy = MatrixPolicy(
        [MatrixAlternative("ab", frozenset({"a", "b"})), MatrixAlternative("x", frozenset({"x"}))],
        {},
    )
    h = Harness(["a", "b", "x"], policy=policy)
    h.ready("x")
    h.request("a")
    h.request("b")
    assert h.effects.swaps == [("a", ("x",))]
    h.complete_swap("a")
    assert h.effects.swaps == [("a", ("x",)), ("b", ())]


def test_one_swap_done_promotes_several_queued_requests() -> None:
    # b and c may run together (non-swapping group) but not beside a.
    policy = GroupPolicy([Group("g", ("a",)), Group("h", ("b", "c"), swap=False)])
    h = Harness(["a", "b", "c"], policy=policy)
    h.ready("a")
    h.request("b")
    h.request("c")
    assert h.effects.swaps == [("b", ("a",))]
    assert [r.model for r in h.scheduler.queued()] == ["c"]
    h.complete_swap("b")
    assert h.effects.swaps == [("b", ("a",)), ("c", ())]
    assert h.scheduler.queued() == []


def test_collation_serves_a_a_b_b_c_c() -> None:
    h = Harness(["a", "b", "c"])
    ids = {m: [] for m in "abc"}
    for model in "abcabc":
        ids[model].append(h.request(model))
    order = []
    while h.scheduler.active_swaps():
        [target] = h.scheduler.active_swaps()
        h.complete_swap(target)
        granted = [g for g in h.effects.grants if g not in order]
        order += granted
        h.finish(*granted)
    assert [target for target, _ in h.effects.swaps] == ["a", "b", "c"]
    assert order == ids["a"] + ids["b"] + ids["c"]


def test_no_swap_while_serving() -> None:
    h = Harness(["a", "b"])
    h.ready("a")
    r1, r2 = h.request("a"), h.request("a")
    rb = h.request("b")
    assert h.effects.swaps == []
    h.finish(r1)
    assert h.effects.swaps == []
    h.finish(r2)
    assert h.effects.swaps == [("b", ("a",))]
    h.complete_swap("b")
    assert h.effects.grants[-1] == rb


def test_a_grant_nobody_received_does_not_count_as_in_flight() -> None:
    h = Harness(["a", "b"])
    ra = h.request("a")
    h.effects.gone.add(ra)  # the client left between admission and grant
    h.complete_swap("a")
    assert h.scheduler.in_flight("a") == 0
    h.request("b")
    assert h.effects.swaps[-1] == ("b", ("a",)), "a must still be evictable"


def test_shutdown_fails_all_waiters_and_refuses_new_requests() -> None:
    policy = GroupPolicy([Group("g1", ("a",), exclusive=False), Group("g2", ("b", "c"))])
    h = Harness(["a", "b", "c"], policy=policy)
    ids = [h.request("a"), h.request("a"), h.request("b"), h.request("b"), h.request("c")]
    h.scheduler.shutdown(h.now)
    assert sorted(h.effects.rejected_ids()) == sorted(ids)
    assert all(isinstance(e, ShuttingDown) for _, e in h.effects.rejects)
    late = h.request("a")
    assert h.effects.rejected_ids()[-1] == late


def test_unload_releases_swap_waiters() -> None:
    h = Harness(["a"])
    ids = [h.request("a"), h.request("a")]
    assert h.scheduler.unload(["a"], h.now) == ("a",)
    marks = h.scheduler.marks(["a"])
    assert h.effects.rejected_ids() == ids
    assert all(isinstance(e, ModelUnloaded) for _, e in h.effects.rejects)
    assert h.effects.ended_swaps == [("a", str(ModelUnloaded("a")))]
    assert h.effects.stops == [("a", "unload")], "its start was already sent: stop it"
    assert not h.scheduler.rested(marks)
    h.announce("a", ProcessState.LAUNCHING)  # the start arrived first...
    assert not h.scheduler.rested(marks)
    h.announce("a", ProcessState.STOPPING)  # ...then the stop
    h.stopped("a")
    assert h.scheduler.rested(marks)


def test_unload_drops_queued_requests_without_starting_them() -> None:
    h = Harness(["a", "b"])
    h.ready("a")
    ra = h.request("a")
    rb = h.request("b")  # queued behind a's in-flight request
    h.scheduler.unload(["b"], h.now)
    assert h.effects.rejected_ids() == [rb]
    h.finish(ra)
    assert h.effects.swaps == []
    assert h.scheduler.state_of("a") == "ready"


def test_priority_queue_order() -> None:
    rules = {
        "x": ModelRules(),
        "a": ModelRules(priority=10),
        "b": ModelRules(priority=5),
        "c": ModelRules(priority=5),
        "d": ModelRules(priority=1),
    }
    h = Harness(rules)
    h.ready("x")
    hold = h.request("x")
    ids = {m: h.request(m) for m in "bdca"}
    queue = [r.model for r in h.scheduler.queued()]
    assert queue == ["a", "b", "c", "d"]
    assert h.effects.last_positions == {ids["a"]: 1, ids["b"]: 2, ids["c"]: 3, ids["d"]: 4}
    h.finish(hold)
    assert h.effects.swaps[0][0] == "a"


def test_cancel_of_a_queued_request_never_loads_it() -> None:
    h = Harness(["a", "b"])
    h.ready("a")
    ra = h.request("a")
    rb = h.request("b")
    h.scheduler.cancel(rb, h.now)
    h.finish(ra)
    assert h.effects.swaps == []
    assert h.scheduler.waiting_count() == 0


def test_cancel_of_a_swap_waiter_serves_only_the_live_one() -> None:
    h = Harness(["a"])
    r1, r2 = h.request("a"), h.request("a")
    h.scheduler.cancel(r1, h.now)
    h.complete_swap("a")
    assert h.effects.grants == [r2]


def test_cancel_of_an_unknown_request_is_a_no_op() -> None:
    h = Harness(["a"])
    h.scheduler.cancel(42, h.now)
    assert h.effects.rejects == [] and h.effects.grants == []


def test_concurrency_limit_counts_queued_and_in_flight() -> None:
    h = Harness({"a": ModelRules(limit=1)})
    h.ready("a")
    r1 = h.request("a")
    r2 = h.request("a")
    [(rejected, error)] = h.effects.rejects
    assert rejected == r2 and isinstance(error, TooManyRequests) and error.status == 429
    h.finish(r1)
    r3 = h.request("a")
    assert h.effects.grants == [r1, r3]


def test_default_concurrency_limit_is_ten() -> None:
    h = Harness(["a"])
    ids = [h.request("a") for _ in range(11)]
    assert h.effects.rejected_ids() == [ids[-1]]


def test_swap_waiters_count_against_the_limit() -> None:
    h = Harness({"a": ModelRules(limit=2)})
    ids = [h.request("a") for _ in range(3)]
    assert h.effects.rejected_ids() == [ids[2]]
    h.complete_swap("a")
    assert h.effects.grants == ids[:2]


def test_a_cancelled_queued_waiter_releases_its_reservation() -> None:
    h = Harness({"a": ModelRules(limit=1), "b": ModelRules(limit=1)})
    h.ready("a")
    h.request("a")
    rb = h.request("b")
    h.scheduler.cancel(rb, h.now)
    h.request("b")
    assert not any(isinstance(e, TooManyRequests) for _, e in h.effects.rejects)


def test_ttl_unloads_an_idle_model_and_counts_from_the_last_request() -> None:
    h = Harness({"a": ModelRules(ttl=5)})
    rid = h.request("a")
    h.complete_swap("a")
    h.advance(10)
    assert h.effects.stops == [], "no expiry while a request is in flight"
    h.finish(rid)
    assert h.scheduler.next_deadline() == h.now + 5
    h.advance(4.9)
    assert h.effects.stops == []
    h.advance(0.2)
    assert h.effects.stops == [("a", "ttl")]
    assert h.scheduler.leaving() == {"a"}


def test_a_request_during_a_ttl_stop_restarts_the_model() -> None:
    h = Harness({"a": ModelRules(ttl=1)})
    h.request("a")
    h.complete_swap("a")
    h.finish(1)
    h.advance(2)
    rid = h.request("a")
    assert h.effects.grants == [1], "never handed to a dying process"
    assert h.effects.swaps[-1] == ("a", ())
    h.stopped("a")
    h.complete_swap("a")
    assert h.effects.grants == [1, rid]


def test_ttl_zero_never_expires() -> None:
    h = Harness({"a": ModelRules(ttl=0)})
    h.request("a")
    h.complete_swap("a")
    h.finish(1)
    assert h.scheduler.next_deadline() is None
    h.advance(1e6)
    assert h.effects.stops == []


def test_a_model_loaded_but_never_used_expires_after_its_ttl() -> None:
    h = Harness({"a": ModelRules(ttl=3)})
    h.request("a")
    h.effects.gone.add(1)
    h.complete_swap("a")
    h.advance(2)
    assert h.effects.stops == [], "llama-swap's quirk (expiry ~1 s after ready) is fixed"
    h.advance(1)
    assert h.effects.stops == [("a", "ttl")]


def test_starvation_bound_stops_fast_path_grants_to_the_blocker() -> None:
    h = Harness(["a", "b"], max_wait=10)
    h.ready("a")
    current = h.request("a")
    rb = h.request("b")
    for _ in range(3):  # steady overlapping traffic keeps a busy
        h.now += 3
        nxt = h.request("a")
        h.finish(current)
        current = nxt
    assert h.effects.swaps == [], "b is still waiting on a's traffic"
    assert nxt in h.effects.grants
    h.now += 3  # b has now waited 12 s > 10 s
    late = h.request("a")
    assert late not in h.effects.grants, "no new grant for the model b must evict"
    h.finish(current)
    assert h.effects.swaps == [("b", ("a",))]
    h.complete_swap("b")
    assert h.effects.grants[-1] == rb


def test_starving_requests_go_first_regardless_of_priority() -> None:
    rules = {"x": ModelRules(), "lo": ModelRules(priority=0), "hi": ModelRules(priority=9)}
    h = Harness(rules, max_wait=5)
    h.ready("x")
    hold = h.request("x")
    lo = h.request("lo")
    h.now += 6
    hi = h.request("hi")
    assert [r.id for r in h.scheduler.queued()] == [hi, lo]
    h.finish(hold)
    assert h.effects.swaps[0][0] == "lo"
    assert h.effects.last_positions.get(hi) == 1


# -- requests that may not load (upstream.ignorePaths) ------------------------------------


def not_loaded(h: Harness, rid: int) -> bool:
    return any(r == rid and isinstance(e, ModelNotLoaded) for r, e in h.effects.rejects)


def test_a_request_that_may_not_load_is_rejected_while_its_model_is_stopped() -> None:
    h = Harness(["a"])
    rid = h.request("a", may_load=False)
    assert not_loaded(h, rid)
    assert h.effects.swaps == [] and h.effects.grants == []
    assert h.scheduler.queued() == []


def test_a_request_that_may_not_load_is_served_by_a_ready_model() -> None:
    h = Harness(["a"])
    h.ready("a")
    rid = h.request("a", may_load=False)
    assert h.effects.grants == [rid]
    assert h.scheduler.in_flight("a") == 1


def test_a_request_that_may_not_load_neither_joins_a_swap_nor_waits_for_one() -> None:
    h = Harness(["a", "b"])
    h.ready("a")
    h.request("b")  # a swap to b, evicting a
    assert h.effects.swaps == [("b", ("a",))]
    joining = h.request("b", may_load=False)
    evicted = h.request("a", may_load=False)  # still ready, but on its way out
    assert not_loaded(h, joining) and not_loaded(h, evicted)
    assert h.effects.swaps == [("b", ("a",))]
    h.complete_swap("b")
    assert h.scheduler.queued() == []


def test_a_request_that_may_not_load_never_brings_back_an_evicted_model() -> None:
    h = Harness(["a", "b"])
    h.ready("a")
    busy = h.request("a")
    h.request("b")  # queued: a has a request in flight
    assert h.effects.swaps == []
    h.finish(busy)
    assert h.effects.swaps == [("b", ("a",))]
    h.complete_swap("b")
    late = h.request("a", may_load=False)
    assert not_loaded(h, late)
    assert h.effects.swaps == [("b", ("a",))]


def test_a_request_that_may_not_load_is_refused_when_it_would_delay_a_starving_one() -> None:
    h = Harness(["a", "b"], max_wait=10)
    h.ready("a")
    busy = h.request("a")
    h.request("b")  # waits for a's request
    h.now += 11  # b is starving now
    rid = h.request("a", may_load=False)
    assert not_loaded(h, rid)
    h.finish(busy)
    assert h.effects.swaps == [("b", ("a",))]


def test_a_reload_keeps_the_waiters_of_a_changed_model_for_its_new_process() -> None:
    h = Harness(["a", "b"])
    h.ready("a")
    busy = h.request("a")
    queued_b = h.request("b")  # queued: a is busy
    h.finish(busy)
    assert h.effects.swaps == [("b", ("a",))]
    joined_b = h.request("b")
    replaced = h.scheduler.reload(h.scheduler.rules, h.scheduler.policy, ["b"], h.now)
    assert replaced == ("b",) and h.effects.shut_downs == ["b"]
    assert h.scheduler.state == RouterState.RELOADING
    assert h.effects.rejects == [] and h.effects.grants == [busy]
    assert [r.id for r in h.scheduler.queued()] == [queued_b, joined_b]
    h.stopped("a")
    assert h.effects.starts == [], "nothing starts b while its old process is ending"
    h.announce("b", ProcessState.SHUTDOWN)
    assert h.effects.replaced == [("b",)]
    assert h.scheduler.state == RouterState.ACCEPTING
    assert h.effects.swaps == [("b", ("a",)), ("b", ())]
    h.complete_swap("b")
    assert h.effects.grants == [busy, queued_b, joined_b]


def test_requests_during_a_reload_are_held_and_admitted_in_order() -> None:
    h = Harness({"a": ModelRules(limit=1), "b": ModelRules()})
    h.ready("a")
    h.scheduler.reload(h.scheduler.rules, h.scheduler.policy, ["a"], h.now)
    first, second = h.request("a"), h.request("a")
    assert h.scheduler.held() and h.effects.grants == [] and h.effects.rejects == []
    assert h.scheduler.waiting_count() == 2
    h.announce("a", ProcessState.SHUTDOWN)
    assert h.effects.replaced == [("a",)]
    assert h.effects.rejected_ids() == [second], "admission (limit 1) happens after the reload"
    h.complete_swap("a")
    assert h.effects.grants == [first]


def test_a_reload_while_reloading_is_refused() -> None:
    h = Harness(["a"])
    h.ready("a")
    h.scheduler.reload(h.scheduler.rules, h.scheduler.policy, ["a"], h.now)
    with pytest.raises(ReloadInProgress):
        h.scheduler.reload(h.scheduler.rules, h.scheduler.policy, ["a"], h.now)


def test_a_reload_that_replaces_nothing_is_done_at_once() -> None:
    h = Harness(["a"])
    h.scheduler.reload(h.scheduler.rules, h.scheduler.policy, [], h.now)
    assert h.scheduler.state == RouterState.ACCEPTING and h.effects.replaced == [()]


def test_a_start_goes_only_to_a_process_at_rest() -> None:
    h = Harness({"a": ModelRules(ttl=5)})
    h.ready("a")
    h.advance(6)
    assert h.effects.stops == [("a", "ttl")]
    rid = h.request("a")  # arrives while the ttl stop is under way
    assert h.effects.swaps == [("a", ())] and h.effects.starts == []
    h.announce("a", ProcessState.STOPPING)
    assert h.effects.starts == []
    h.stopped("a")
    assert h.effects.starts == ["a"]
    h.ready("a")
    assert h.effects.grants == [rid]


def test_a_launched_swap_ends_only_on_serving_or_an_error() -> None:
    h = Harness(["a"])
    h.ready("a")
    h.scheduler.unload(["a"], h.now)
    h.announce("a", ProcessState.FAILED, "crashed")  # raced the unload's stop
    rid = h.request("a")
    assert h.effects.starts == ["a"], "at rest: the start follows the stop on its way"
    h.stopped("a")  # the process handled the stop first: this is not the start's outcome
    assert h.effects.rejects == []
    h.announce("a", ProcessState.LAUNCHING)
    h.announce("a", ProcessState.STARTING)
    assert h.effects.grants == [] and h.effects.rejects == []
    h.announce("a", ProcessState.FAILED, "health check timed out after 1s")
    [(rejected, error)] = h.effects.rejects
    assert rejected == rid and isinstance(error, SwapFailed)
    assert "health check timed out after 1s" in str(error)


def test_a_crash_cuts_the_requests_in_flight() -> None:
    h = Harness(["a"])
    h.ready("a")
    h.request("a")
    h.announce("a", ProcessState.FAILED, "upstream exited unexpectedly with code 1")
    assert h.effects.revokes == [("a", "upstream exited unexpectedly with code 1")]


def test_unloading_a_failed_model_clears_the_failure() -> None:
    h = Harness(["a"])
    h.announce("a", ProcessState.FAILED, "boom")
    h.scheduler.unload(["a"], h.now)
    marks = h.scheduler.marks(["a"])
    assert h.effects.stops == [("a", "unload")]
    assert not h.scheduler.rested(marks)
    h.stopped("a")
    assert h.scheduler.rested(marks)


def test_shutdown_drains_until_every_process_has_ended() -> None:
    h = Harness(["a", "b"])
    h.ready("a")
    h.request("a")
    waiting = h.request("b")
    h.scheduler.shutdown(h.now)
    assert h.scheduler.state == RouterState.DRAINING
    assert waiting in h.effects.rejected_ids()
    assert h.effects.revokes == [("a", "llamaswap is shutting down")]
    assert sorted(h.effects.shut_downs) == ["a", "b"]
    h.announce("a", ProcessState.SHUTTING_DOWN)
    h.announce("b", ProcessState.SHUTDOWN)
    assert h.scheduler.state == RouterState.DRAINING
    h.announce("a", ProcessState.SHUTDOWN)
    assert h.scheduler.state == RouterState.SHUTDOWN
    h.scheduler.shutdown(h.now)  # idempotent
    assert isinstance(h.effects.rejects[-1][1], ShuttingDown) or h.request("a")


def test_an_answer_to_an_earlier_command_is_not_taken_for_the_latest() -> None:
    """Found by the property suite (under fit): a "stopped" that was on its way before an
    unload's stop let a swap start its target beside the model still running."""
    h = Harness(["a", "b"])
    ra = h.request("a")
    h.complete_swap("a")
    h.finish(ra)
    h.scheduler.unload(["a"], h.now)
    marks = h.scheduler.marks(["a"])
    rb = h.request("b")
    h.announce("a", ProcessState.STOPPED, handled=1)  # sent before the unload's stop
    assert h.effects.starts == ["a"], "b must not start: a has not answered the stop"
    assert not h.scheduler.rested(marks)
    h.announce("a", ProcessState.STOPPED, handled=2)
    assert h.effects.starts == ["a", "b"] and h.scheduler.rested(marks)
    h.ready("b")
    assert h.effects.grants == [ra, rb]


def test_an_ignored_command_is_acknowledged_so_nothing_waits_for_an_answer() -> None:
    h = Harness(["a", "b"])
    ra = h.request("a")
    h.complete_swap("a")
    h.finish(ra)
    h.scheduler.unload(["a"], h.now)  # a had already stopped: the stop is ignored...
    h.announce("a", ProcessState.STOPPED, handled=1)
    rb = h.request("b")
    assert h.effects.starts == ["a"]
    h.announce("a", ProcessState.STOPPED, handled=2)  # ...and acknowledged
    h.ready("b")
    assert h.effects.grants == [ra, rb]
