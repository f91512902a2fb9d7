"""API keys in the scheduler: each key's own concurrency limit, and keys taking turns
within the FIFO (the starvation bound still goes first)."""

from __future__ import annotations

from llamaswap.scheduling import KeyTooManyRequests, Request

from .fakes import Harness


def keyed(h: Harness, model: str, key: str) -> int:
    h._next_id += 1
    h.scheduler.submit(Request(h._next_id, model, h.now, key=key), h.now)
    return h._next_id


def test_a_key_over_its_concurrency_limit_gets_a_429_the_others_do_not() -> None:
    h = Harness(["a"])
    h.scheduler.key_limits = {"team": 2}
    h.ready("a")
    first, second = keyed(h, "a", "team"), keyed(h, "a", "team")
    third = keyed(h, "a", "team")
    other = keyed(h, "a", "ops")
    assert h.effects.grants == [first, second, other]
    [(rejected, error)] = h.effects.rejects
    assert rejected == third and isinstance(error, KeyTooManyRequests)
    assert error.status == 429 and "team" in str(error)
    h.finish(first)
    assert keyed(h, "a", "team") in h.effects.grants, "a place is free again"


def test_waiting_keys_take_turns_within_the_fifo() -> None:
    h = Harness(["a", "b"])
    h.ready("a")
    busy = h.request("a")  # b must wait for it
    b1 = keyed(h, "b", "team")
    b2 = keyed(h, "b", "team")
    b3 = keyed(h, "b", "team")
    o1 = keyed(h, "b", "ops")
    assert h.effects.last_positions == {b1: 1, o1: 2, b2: 3, b3: 4}
    h.finish(busy)
    h.complete_swap("b")
    assert h.effects.grants[1:] == [b1, o1, b2, b3]


def test_without_keys_the_order_is_plain_fifo() -> None:
    h = Harness(["a", "b"])
    h.ready("a")
    h.request("a")
    ids = [h.request("b") for _ in range(3)]
    assert h.effects.last_positions == {rid: i for i, rid in enumerate(ids, start=1)}


def test_a_starving_request_still_goes_first() -> None:
    h = Harness(["a", "b", "c"], max_wait=10)
    h.ready("a")
    h.request("a")  # in flight on a: everything else queues
    starving = keyed(h, "b", "team")
    h.now = 5
    keyed(h, "c", "ops")
    keyed(h, "b", "team")
    h.advance(6)  # `starving` has waited 11 s, past the bound
    keyed(h, "c", "ops")
    assert h.effects.last_positions[starving] == 1
