"""What to explore: the scheduler and policy under test, and the ground truth to judge them.

The invariants judge the scheduler against the *configuration* (groups, matrix sets,
declared resources), never against the scheduler's own helpers, so a bug hidden in a
helper cannot also hide from the check.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from llamaswap.scheduling import (
    Effects,
    Group,
    ModelRules,
    Policy,
    Resources,
    Scheduler,
)

SchedulerFactory = Callable[..., Scheduler]


class MatrixMembership(Protocol):
    """A matrix's ground truth: may these models run together? (see `MatrixTruth`)"""

    def allows(self, models: frozenset[str]) -> bool: ...


@dataclass(frozen=True)
class Scenario:
    """A routing setup to explore with Hypothesis."""

    rules: Mapping[str, ModelRules]
    policy: Policy
    max_wait: float = 60.0
    # ground truth from the config (None = that kind of rule is not in use)
    groups: tuple[Group, ...] | None = None
    # every allowed set written out (small, hand-made matrices), or a membership test
    matrix_sets: tuple[frozenset[str], ...] | MatrixMembership | None = None
    resources: Resources | None = None
    check_capacity: bool = True
    # models whose processes save and restore their prompt caches (the saving/restoring
    # states of the process spec)
    persist_slots: frozenset[str] = frozenset()
    # API keys' concurrency limits (requests waiting or in flight per key)
    key_limits: Mapping[str, int] = field(default_factory=dict)
    # the code under test; tests substitute mutants here
    scheduler_factory: SchedulerFactory = Scheduler

    @property
    def models(self) -> list[str]:
        return sorted(self.rules)

    def build_scheduler(self, effects: Effects) -> Scheduler:
        return self.scheduler_factory(
            self.rules, self.policy, effects, max_wait=self.max_wait, key_limits=self.key_limits
        )

    def matrix_allows(self, models: frozenset[str]) -> bool:
        """Do the matrix sets let `models` run together? (True without a matrix.)"""
        sets = self.matrix_sets
        if sets is None:
            return True
        if isinstance(sets, tuple):
            return any(models <= allowed for allowed in sets)
        return sets.allows(models)

    def group_of(self, model: str) -> Group | None:
        for group in self.groups or ():
            if model in group.members:
                return group
        return None
