"""Mutation proof: the exploration catches bugs planted in the scheduler and policy.

Each mutant is a small subclass that breaks exactly one promise. If the property suite
stopped noticing any of them, its green runs would mean nothing.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis.stateful import run_state_machine_as_test

from llamaswap.matrix import compile_program, compile_sets
from llamaswap.scheduling import (
    Group,
    GroupPolicy,
    MatrixAlternative,
    MatrixPolicy,
    ModelRules,
    Pinned,
    Request,
    Scheduler,
)
from llamaswap.verification import InvariantViolation, Scenario, build_exploration
from llamaswap.verification.matrix_truth import MatrixTruth

HUNT = settings(
    max_examples=400,
    stateful_step_count=30,
    database=None,
    deadline=None,
    report_multiple_bugs=False,
    phases=[Phase.generate],  # the first failure is proof enough; shrinking costs time
    suppress_health_check=list(HealthCheck),
)

RULES = {"a": ModelRules(), "b": ModelRules(), "c": ModelRules(ttl=5)}
GROUPS = (
    Group("pair", ("a", "b")),
    Group("keep", ("c",), exclusive=False, persistent=True),
)


class EvictsBusyModels(Scheduler):
    """Bug: forgets that requests are in flight when choosing to swap."""

    def _any_busy(self, models: tuple[str, ...]) -> bool:
        return False


class CountsUnreceivedGrants(Scheduler):
    """Bug: counts a grant as in flight even when the caller had already left."""

    def _grant(self, request: Request, now: float) -> None:
        self._waiting.pop(request.id, None)
        self._effects.grant(request)
        self._granted[request.id] = request.model
        self._in_flight[request.model] = self._in_flight.get(request.model, 0) + 1


class IgnoresStarvation(Scheduler):
    """Bug: no starvation bound (llama-swap's behaviour)."""

    def _blockers(self, request: Request, now: float) -> list[Request]:
        return []


class IgnoresKeepAlive(Scheduler):
    """Bug: a request's keep-alive is dropped; the configured ttl always applies."""

    def submit(self, request: Request, now: float) -> None:
        request.keep_alive = None
        super().submit(request, now)


class LoadsForIgnoredPaths(Scheduler):
    """Bug: treats a request that may not load like any other (it starts or joins swaps)."""

    def submit(self, request: Request, now: float) -> None:
        request.may_load = True
        super().submit(request, now)


def hunt(scenario: Scenario) -> InvariantViolation:
    # An explicit seed, not derandomize: derandomized runs of different state machines
    # share one test function, so their examples would depend on which tests ran first.
    machine = seed(20261123)(build_exploration(scenario))
    with pytest.raises(InvariantViolation) as caught:
        run_state_machine_as_test(machine, settings=HUNT)
    return caught.value


def test_catches_evicting_a_busy_model() -> None:
    scenario = Scenario(
        RULES, GroupPolicy(GROUPS), groups=GROUPS, scheduler_factory=EvictsBusyModels
    )
    assert hunt(scenario).kind == "busy eviction"


def test_catches_counting_a_grant_nobody_received() -> None:
    scenario = Scenario(
        RULES, GroupPolicy(GROUPS), groups=GROUPS, scheduler_factory=CountsUnreceivedGrants
    )
    assert hunt(scenario).kind in {"in-flight accounting", "exactly-once", "liveness"}


def test_catches_ignoring_a_persistent_group() -> None:
    forgetful = GroupPolicy(
        Group(g.name, g.members, g.swap, exclusive=True, persistent=False) for g in GROUPS
    )
    scenario = Scenario(RULES, forgetful, groups=GROUPS)
    assert hunt(scenario).kind == "persistent"


def test_catches_ignoring_the_starvation_bound() -> None:
    default = (Group("(default)", ("a", "b", "c")),)
    scenario = Scenario(
        RULES,
        GroupPolicy(default),
        max_wait=10,
        groups=default,
        scheduler_factory=IgnoresStarvation,
    )
    assert hunt(scenario).kind == "starvation"


def test_catches_loading_for_a_request_that_may_not_load() -> None:
    scenario = Scenario(
        RULES, GroupPolicy(GROUPS), groups=GROUPS, scheduler_factory=LoadsForIgnoredPaths
    )
    assert hunt(scenario).kind == "no load"


def test_catches_ignoring_a_keep_alive() -> None:
    scenario = Scenario(
        RULES, GroupPolicy(GROUPS), groups=GROUPS, scheduler_factory=IgnoresKeepAlive
    )
    assert hunt(scenario).kind == "idle limit"


def test_catches_evicting_a_model_that_is_not_swappable() -> None:
    rules = {**RULES, "a": ModelRules(swappable=False)}
    default = (Group("(default)", ("a", "b", "c")),)
    scenario = Scenario(rules, GroupPolicy(default), groups=default)  # no Pinned wrapper
    assert hunt(scenario).kind == "not swappable"
    Scenario(rules, Pinned(GroupPolicy(default), {"a"}), groups=default)  # the right one


def test_catches_a_matrix_policy_that_keeps_what_no_set_allows() -> None:
    """Judged by the unpruned projection of the sets, not by the solver under test."""
    compiled = compile_sets([("pair", "(a | b) & c"), ("ab", "a & b")], lambda model: model)
    program = compile_program(compiled.order, compiled.roots)
    # any two may run together, never all three: a policy keeping all three is wrong
    too_lenient = MatrixPolicy([MatrixAlternative("all", frozenset({"a", "b", "c"}))], {})
    scenario = Scenario(RULES, too_lenient, matrix_sets=MatrixTruth(program, listed_limit=0))
    violation = hunt(scenario)
    assert violation.kind == "matrix"
    assert violation.models == frozenset({"a", "b", "c"})
