"""Hypothesis explores the pure scheduler under every policy (see llamaswap.verification).

Invariants after every step: each request resolved exactly once; in-flight counts
equal grants minus finishes; no stop for a model with requests in flight; co-running
models allowed by the config (swap groups, matrix sets, capacity); persistent groups
never evicted by other groups; nothing new delays a request past maxWaitSeconds.
Teardown: once processes cooperate, every request is resolved (liveness).
"""

from __future__ import annotations

from hypothesis import HealthCheck, seed, settings

from llamaswap.matrix import MatrixProgram, compile_program, compile_sets
from llamaswap.scheduling import (
    CapacityGuard,
    FitPolicy,
    Group,
    GroupPolicy,
    MatrixAlternative,
    MatrixPolicy,
    ModelRules,
    Pinned,
    Resources,
)
from llamaswap.verification import Scenario, build_exploration
from llamaswap.verification.matrix_truth import MatrixTruth

# A fixed seed rather than derandomize=True: every stateful test runs through one
# Hypothesis test function, so derandomized examples would depend on test order.
SEED = 20261123
SETTINGS = settings(
    max_examples=500,
    stateful_step_count=30,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

RULES = {
    "a": ModelRules(ttl=5),
    "b": ModelRules(limit=2, priority=5),
    "c": ModelRules(),
    "d": ModelRules(ttl=30, priority=1),
}


DEFAULT_GROUPS = (Group("(default)", ("a", "b", "c", "d")),)
MIXED_GROUPS = (
    Group("pair", ("a", "b"), swap=False, exclusive=True),
    Group("side", ("c",), swap=True, exclusive=False),
    Group("keep", ("d",), swap=True, exclusive=False, persistent=True),
)
SETS = (frozenset({"a", "b"}), frozenset({"a", "c"}), frozenset({"d"}))


def dsl(*sets: tuple[str, str]) -> MatrixProgram:
    compiled = compile_sets(list(sets), lambda model: model)
    return compile_program(compiled.order, compiled.roots)


# `with_d` references `pair` and is defined first: solver order is pair, with_d, solo
DSL_SETS = dsl(("with_d", "+pair & (d | a)"), ("pair", "(a | b) & c"), ("solo", "d"))
RESOURCES = Resources(
    {"vram": 24}, {"a": {"vram": 8}, "b": {"vram": 10}, "c": {"vram": 12}, "d": {"vram": 20}}
)
LOOSE_GROUPS = (
    Group("all", ("a", "b", "c"), swap=False, exclusive=False),
    Group("big", ("d",), swap=True, exclusive=False),
)

SCENARIOS = {
    "DefaultGroup": Scenario(
        RULES,
        GroupPolicy(DEFAULT_GROUPS),
        max_wait=20,
        groups=DEFAULT_GROUPS,
        persist_slots=frozenset({"a", "c"}),  # their prompt caches are saved and restored
    ),
    "MixedGroups": Scenario(
        RULES,
        GroupPolicy(MIXED_GROUPS),
        max_wait=20,
        groups=MIXED_GROUPS,
        key_limits={"k1": 2},  # and k2 without a limit: fair turns, the bound still holds
    ),
    "Matrix": Scenario(
        RULES,
        MatrixPolicy([MatrixAlternative(f"s{i}", s) for i, s in enumerate(SETS)], {"a": 3, "b": 1}),
        max_wait=20,
        matrix_sets=SETS,
    ),
    # judged by the unpruned projection of the sets, not by the solver's own pruning
    "SymbolicMatrix": Scenario(
        RULES,
        MatrixPolicy(DSL_SETS, {"a": 3, "c": 2}),
        max_wait=20,
        matrix_sets=MatrixTruth(DSL_SETS, listed_limit=0),
    ),
    "Fit": Scenario(RULES, FitPolicy(RESOURCES), max_wait=20, resources=RESOURCES),
    "Pinned": Scenario(
        {**RULES, "c": ModelRules(ttl=5, swappable=False)},
        Pinned(GroupPolicy(DEFAULT_GROUPS), {"c"}),
        max_wait=20,
        groups=DEFAULT_GROUPS,
    ),
    "GuardedGroups": Scenario(
        RULES,
        CapacityGuard(GroupPolicy(LOOSE_GROUPS), RESOURCES),
        max_wait=20,
        groups=LOOSE_GROUPS,
        resources=RESOURCES,
    ),
}


def as_test(scenario: Scenario) -> type:
    case: type = seed(SEED)(build_exploration(scenario)).TestCase
    case.settings = SETTINGS
    return case


globals().update({f"Test{name}": as_test(scenario) for name, scenario in SCENARIOS.items()})
