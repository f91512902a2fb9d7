"""Eviction policies as pure functions (llama-swap's group and matrix cases, plus fit)."""

from __future__ import annotations

import pytest

from llamaswap.scheduling import (
    CannotFit,
    CapacityGuard,
    FitPolicy,
    Group,
    GroupPolicy,
    MatrixAlternative,
    MatrixPolicy,
    Resources,
    Usage,
)


def default_group(*models: str) -> GroupPolicy:
    return GroupPolicy([Group("(default)", models)])


def test_default_group_runs_one_model_at_a_time() -> None:
    policy = default_group("a", "b", "c")
    assert policy.evict_for("b", {"a"}) == ("a",)
    assert policy.evict_for("a", {"a", "c"}) == ("c",)
    assert policy.evict_for("a", set()) == ()


def test_swap_group_stops_the_previous_member() -> None:
    policy = GroupPolicy([Group("g", ("a", "b"))])
    assert policy.evict_for("b", {"a"}) == ("a",)


def test_non_swap_group_keeps_members_together() -> None:
    policy = GroupPolicy([Group("g", ("a", "b"), swap=False)])
    assert policy.evict_for("b", {"a"}) == ()


def test_exclusive_group_stops_other_groups() -> None:
    policy = GroupPolicy([Group("g1", ("a",)), Group("g2", ("b",))])
    assert policy.evict_for("b", {"a"}) == ("a",)


def test_non_exclusive_groups_run_in_parallel() -> None:
    policy = GroupPolicy(
        [Group("g1", ("a",), exclusive=False), Group("g2", ("b",), exclusive=False)]
    )
    assert policy.evict_for("b", {"a"}) == ()
    assert policy.evict_for("a", {"b"}) == ()


def test_persistent_group_is_never_evicted_by_another_group() -> None:
    policy = GroupPolicy([Group("keep", ("p",), persistent=True), Group("g", ("a", "b"))])
    assert policy.evict_for("a", {"p", "b"}) == ("b",)
    assert policy.protected("a") == frozenset({"p"})


def test_non_exclusive_member_does_not_unload_an_exclusive_group() -> None:
    """llama-swap's legacy gotcha, kept on purpose: loading c leaves a running."""
    policy = GroupPolicy([Group("big", ("a",)), Group("side", ("c",), exclusive=False)])
    assert policy.evict_for("c", {"a"}) == ()
    assert policy.evict_for("a", {"c"}) == ("c",)
    assert policy.rule_for("c", "a") == "side.exclusive: false"


def test_duplicate_membership_is_rejected() -> None:
    with pytest.raises(ValueError, match="multiple groups"):
        GroupPolicy([Group("g1", ("a",)), Group("g2", ("a",))])


def matrix(*sets: tuple[str, set[str]], costs: dict[str, int] | None = None) -> MatrixPolicy:
    return MatrixPolicy([MatrixAlternative(n, frozenset(m)) for n, m in sets], costs or {})


def test_matrix_evicts_models_outside_the_chosen_set() -> None:
    policy = matrix(("a", {"a"}), ("b", {"b"}))
    assert policy.evict_for("b", {"a"}) == ("a",)


def test_matrix_coexistence_in_a_set() -> None:
    policy = matrix(("ab", {"a", "b"}))
    assert policy.evict_for("b", {"a"}) == ()


def test_matrix_ties_go_to_the_first_defined_set() -> None:
    policy = matrix(("first", {"a", "b"}), ("second", {"a", "c"}))
    assert policy.evict_for("a", {"b", "c"}) == ("c",)


def test_matrix_prefers_the_cheapest_eviction() -> None:
    policy = matrix(("ab", {"a", "b"}), ("ac", {"a", "c"}), costs={"b": 10, "c": 1})
    assert policy.evict_for("a", {"b", "c"}) == ("c",)


def test_matrix_model_in_no_set_runs_alone() -> None:
    policy = matrix(("ab", {"a", "b"}))
    assert policy.evict_for("z", {"a", "b"}) == ("a", "b")


def test_matrix_running_target_evicts_nothing() -> None:
    policy = matrix(("a", {"a"}), ("b", {"b"}))
    assert policy.evict_for("a", {"a", "b"}) == ()


RES = Resources({"vram": 24}, {"a": {"vram": 10}, "b": {"vram": 10}, "c": {"vram": 20}})


def test_fit_keeps_what_fits() -> None:
    assert FitPolicy(RES).evict_for("b", {"a"}) == ()


def test_fit_evicts_least_recently_used_idle_first() -> None:
    usage = Usage(last_used={"a": 5.0, "b": 1.0})
    assert FitPolicy(RES).evict_for("c", {"a", "b"}, usage) == ("a", "b")
    usage = Usage(last_used={"a": 5.0, "b": 1.0})
    res = Resources({"vram": 30}, RES.needs)
    assert FitPolicy(res).evict_for("c", {"a", "b"}, usage) == ("b",)


def test_fit_prefers_idle_over_busy_even_when_busy_is_older() -> None:
    res = Resources({"vram": 30}, RES.needs)
    usage = Usage(last_used={"a": 1.0, "b": 5.0}, busy={"a"})
    assert FitPolicy(res).evict_for("c", {"a", "b"}, usage) == ("b",)


def test_fit_names_busy_models_only_when_idle_ones_cannot_make_room() -> None:
    usage = Usage(last_used={"a": 1.0, "b": 5.0}, busy={"a", "b"})
    assert FitPolicy(RES).evict_for("c", {"a", "b"}, usage) == ("a", "b")


def test_fit_cannot_fit_a_model_bigger_than_the_machine() -> None:
    res = Resources({"vram": 8}, RES.needs)
    with pytest.raises(CannotFit, match="model a needs"):
        FitPolicy(res).evict_for("a", set())


def test_capacity_guard_adds_evictions_to_a_permissive_group() -> None:
    groups = GroupPolicy([Group("g1", ("a", "c"), swap=False, exclusive=False)])
    guarded = CapacityGuard(groups, RES)
    assert groups.evict_for("c", {"a"}) == ()
    assert guarded.evict_for("c", {"a"}) == ("a",)


def test_capacity_guard_never_evicts_a_persistent_model() -> None:
    groups = GroupPolicy([Group("keep", ("c",), persistent=True), Group("g", ("a",))])
    guarded = CapacityGuard(groups, RES)
    with pytest.raises(CannotFit):
        guarded.evict_for("a", {"c"})
