"""The search over running sets: every set a policy reaches, with its shortest path."""

from __future__ import annotations

from llamaswap.policytools.findings import format_amounts, over_capacity
from llamaswap.policytools.metrics import WaitSummary, percentile
from llamaswap.policytools.reachable import (
    describe,
    minimal_over_capacity,
    reachable_sets,
    reproduces,
)
from llamaswap.scheduling import Group, GroupPolicy, ModelRules, Resources, rules_allowing

LOOSE = GroupPolicy(
    [Group("all", ("a", "b", "c", "d"), swap=False, exclusive=False, yaml_path="groups.all")]
)


def test_a_swap_group_reaches_no_co_running_set() -> None:
    policy = GroupPolicy([Group("g", ("a", "b", "c"))])
    reachable = reachable_sets(policy, ["a", "b", "c"])
    assert set(reachable.parents) == {frozenset(), *(frozenset({m}) for m in "abc")}
    assert reachable.complete and reachable.co_running() == 0


def test_every_subset_of_a_loose_group_is_reached_by_its_shortest_path() -> None:
    reachable = reachable_sets(LOOSE, ["a", "b", "c", "d"])
    assert len(reachable) == 16 and reachable.complete
    steps = reachable.path_to(frozenset({"b", "d"}))
    assert [s.target for s in steps] == ["b", "d"]
    assert describe(steps) == (
        "1. a request for b is served: b loads",
        "2. a request for d is served: d loads, beside b",
    )


def test_the_search_is_bounded() -> None:
    reachable = reachable_sets(LOOSE, ["a", "b", "c", "d"], limit=5)
    assert len(reachable) == 5 and not reachable.complete


def test_only_minimal_sets_over_capacity_are_kept() -> None:
    resources = Resources({"vram": 20}, {m: {"vram": 8} for m in "abcd"})
    minimal = minimal_over_capacity(reachable_sets(LOOSE, ["a", "b", "c", "d"]), resources)
    assert minimal == [frozenset(t) for t in ("abc", "abd", "acd", "bcd")]
    assert over_capacity(resources, "abc") == "vram 24 > 20"
    assert format_amounts(resources.total("ab")) == "vram 16"


def test_the_real_scheduler_reproduces_a_reached_set() -> None:
    reachable = reachable_sets(LOOSE, ["a", "b", "c", "d"])
    target = frozenset("abc")
    rules = {m: ModelRules(ttl=1) for m in "abcd"}
    assert reproduces(rules, LOOSE, reachable.path_to(target), target)
    swap_only = GroupPolicy([Group("g", ("a", "b", "c", "d"))])
    assert not reproduces(rules, swap_only, reachable.path_to(target), target)


def test_rules_are_named_in_the_direction_the_policy_keeps_a_model() -> None:
    policy = GroupPolicy(
        [
            Group("main", ("a",), yaml_path="groups.main"),
            Group("side", ("c",), exclusive=False, yaml_path="groups.side"),
        ]
    )
    # loading a evicts c; loading c keeps a: only side's rule lets them co-run
    assert rules_allowing(policy, ["a", "c"]) == ("groups.side.exclusive: false",)
    assert rules_allowing(LOOSE, ["a", "b"]) == ("groups.all.swap: false",)


def test_percentiles_are_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.0
    assert percentile(range(1, 101), 95) == 95
    assert WaitSummary.of([5.0]) == WaitSummary(1, 5.0, 5.0, 5.0)
