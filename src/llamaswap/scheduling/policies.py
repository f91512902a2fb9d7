"""Eviction policies: pure functions from (target, running set) to the models to stop.

No I/O, no clock, no mutable state: the scheduler and `llamaswap check` call the very
same objects. `running` always includes the targets of swaps already in flight, and
includes the target itself when it is running.

- `GroupPolicy`: llama-swap's groups (swap / exclusive / persistent), including the
  legacy non-exclusive gotcha (loading a member of a non-exclusive group never unloads
  other groups, even exclusive ones).
- `MatrixPolicy`: llama-swap's matrix: the cheapest allowed set that contains the target.
- `FitPolicy`: ours: models declare resources, the machine declares capacity; evict
  least-recently-used idle models until the target fits, never a busy one.
- `CapacityGuard`: wraps group or matrix so a declared capacity is never exceeded.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from llamaswap.matrix import (
    MatrixProgram,
    can_contain_all,
    evictions,
    first_set_containing,
    listed_program,
)


class CannotFit(Exception):
    """The target can never run next to what must stay (persistent models, capacity)."""


@dataclass(frozen=True)
class Usage:
    """What resource-aware policies may know besides the running set."""

    last_used: Mapping[str, float] = field(default_factory=dict)
    busy: Collection[str] = frozenset()
    # what each model was measured to use, where more than it declares (probes, `fit`)
    learned: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


NO_USAGE = Usage()


class Policy(Protocol):
    name: str

    def evict_for(
        self, target: str, running: Collection[str], usage: Usage = NO_USAGE
    ) -> tuple[str, ...]:
        """Models in `running` that must stop before `target` may run (sorted)."""
        ...

    def protected(self, target: str) -> frozenset[str]:
        """Models this policy never evicts on behalf of `target`."""
        ...

    def rule_for(self, target: str, other: str) -> str:
        """The YAML path of the rule that lets `other` keep running beside `target`."""
        ...


def rules_allowing(policy: Policy, models: Collection[str]) -> tuple[str, ...]:
    """The YAML rules that let these models run together, pair by pair.

    `rule_for(target, other)` explains why loading `target` keeps `other`, so it is
    asked only in the directions the policy really keeps the other model.
    """
    rules: list[str] = []
    for target in sorted(models):
        for other in sorted(models):
            if other == target:
                continue
            try:
                evicted = policy.evict_for(target, frozenset({other}))
            except CannotFit:
                continue
            if other not in evicted:
                rules.append(policy.rule_for(target, other))
    return tuple(dict.fromkeys(rules))


# --- groups ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    name: str
    members: tuple[str, ...]
    swap: bool = True
    exclusive: bool = True
    persistent: bool = False
    yaml_path: str = ""


class GroupPolicy:
    """llama-swap's group router (§1.8 of the behaviour reference)."""

    name = "group"

    def __init__(self, groups: Iterable[Group]) -> None:
        self.groups = tuple(groups)
        self._group_of: dict[str, Group] = {}
        for group in self.groups:
            for member in group.members:
                if member in self._group_of:
                    raise ValueError(
                        f"model member {member} is used in multiple groups: "
                        f"{self._group_of[member].name} and {group.name}"
                    )
                self._group_of[member] = group

    def group_of(self, model: str) -> Group | None:
        return self._group_of.get(model)

    def evict_for(
        self, target: str, running: Collection[str], usage: Usage = NO_USAGE
    ) -> tuple[str, ...]:
        group = self._group_of.get(target)
        if group is None:
            return tuple(sorted(m for m in running if m != target))
        evict = []
        for model in running:
            if model == target:
                continue
            other = self._group_of.get(model)
            if other is group:
                if group.swap:
                    evict.append(model)
            elif group.exclusive and not (other is not None and other.persistent):
                evict.append(model)
        return tuple(sorted(evict))

    def protected(self, target: str) -> frozenset[str]:
        group = self._group_of.get(target)
        return frozenset(
            m for m, g in self._group_of.items() if g.persistent and g is not group and m != target
        )

    def rule_for(self, target: str, other: str) -> str:
        group, other_group = self._group_of.get(target), self._group_of.get(other)
        if group is None or other_group is None:
            return "groups"
        if other_group is group:
            return f"{group.yaml_path or group.name}.swap: false"
        if other_group.persistent:
            return f"{other_group.yaml_path or other_group.name}.persistent: true"
        return f"{group.yaml_path or group.name}.exclusive: false"


# --- matrix ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MatrixAlternative:
    """One explicit alternative: models that may run together (hand-written matrices)."""

    set_name: str
    models: frozenset[str]
    yaml_path: str = ""


class MatrixPolicy:
    """llama-swap's matrix router (§1.9): cheapest allowed set containing the target.

    The sets are a compiled program, solved symbolically on every call (never expanded,
    so any number of combinations is fine); explicit `MatrixAlternative`s, in solver
    order, are compiled into one. Ties go to the first alternative in llama-swap's
    solver order. A model in no set runs alone (everything else is evicted).
    """

    name = "matrix"

    def __init__(
        self,
        sets: MatrixProgram | Sequence[MatrixAlternative],
        evict_costs: Mapping[str, int],
    ) -> None:
        if isinstance(sets, MatrixProgram):
            self.program = sets
        else:
            self.program = listed_program((a.set_name, a.models, a.yaml_path) for a in sets)
        self.evict_costs = dict(evict_costs)

    def cost(self, model: str) -> int:
        return self.evict_costs.get(model, 1)

    def evict_for(
        self, target: str, running: Collection[str], usage: Usage = NO_USAGE
    ) -> tuple[str, ...]:
        if target in running:
            return ()
        return evictions(self.program, target, running, self.evict_costs)

    def allows(self, models: Collection[str]) -> bool:
        """May these models run together (all in one alternative of one set)?"""
        return can_contain_all(self.program, models)

    def protected(self, target: str) -> frozenset[str]:
        return frozenset()

    def rule_for(self, target: str, other: str) -> str:
        found = first_set_containing(self.program, (target, other))
        if found is None:
            return "matrix.sets"
        return found.yaml_path or f"matrix.sets.{found.name}"


# --- resources ------------------------------------------------------------------------


@dataclass(frozen=True)
class Resources:
    """What the machine has, and what each model needs (missing = needs nothing)."""

    capacity: Mapping[str, float]
    needs: Mapping[str, Mapping[str, float]]

    def total(self, models: Iterable[str]) -> dict[str, float]:
        sums = dict.fromkeys(self.capacity, 0.0)
        for model in models:
            for name, amount in self.needs.get(model, {}).items():
                sums[name] = sums.get(name, 0.0) + amount
        return sums

    def fits(self, models: Iterable[str]) -> bool:
        totals = self.total(models)
        return all(totals.get(name, 0.0) <= limit + 1e-9 for name, limit in self.capacity.items())

    def need(self, model: str, name: str) -> float:
        return self.needs.get(model, {}).get(name, 0.0)

    def with_learned(self, learned: Mapping[str, Mapping[str, float]]) -> Resources:
        """These resources with each model needing the larger of declared and learned."""
        if not learned:
            return self
        needs = {m: dict(n) for m, n in self.needs.items()}
        for model, amounts in learned.items():
            for name, amount in amounts.items():
                merged = needs.setdefault(model, {})
                merged[name] = max(merged.get(name, 0.0), amount)
        return Resources(self.capacity, needs)


def _lru_order(candidates: Iterable[str], usage: Usage) -> list[str]:
    """Idle models first, least recently used first; then busy ones the same way."""
    return sorted(candidates, key=lambda m: (m in usage.busy, usage.last_used.get(m, 0.0), m))


def _fill_to_fit(
    target: str,
    keep: Collection[str],
    resources: Resources,
    usage: Usage,
    protected: Collection[str],
) -> tuple[str, ...]:
    """Extra evictions, in LRU order, until `keep` + target fits; CannotFit if impossible."""
    resident = set(keep) | {target}
    extra: list[str] = []
    for model in _lru_order((m for m in keep if m != target and m not in protected), usage):
        if resources.fits(resident):
            break
        resident.discard(model)
        extra.append(model)
    if not resources.fits(resident):
        need = resources.needs.get(target, {})
        raise CannotFit(
            f"model {target} needs {dict(need)} but cannot fit in {dict(resources.capacity)} "
            f"next to {sorted(m for m in resident if m != target)}"
        )
    return tuple(extra)


class FitPolicy:
    """Resource-aware router: keep everything that fits, evict LRU idle models otherwise.

    A busy model is only put in the evict set when idle ones cannot make room, and the
    scheduler never stops a busy model: the request waits until it is idle.
    """

    name = "fit"

    def __init__(self, resources: Resources, pinned: Collection[str] = frozenset()) -> None:
        self.resources = resources
        self.pinned = frozenset(pinned)  # never evicted (swappable: false)

    def evict_for(
        self, target: str, running: Collection[str], usage: Usage = NO_USAGE
    ) -> tuple[str, ...]:
        resources = self.resources.with_learned(usage.learned)
        if target in running and resources.fits(running):
            return ()
        keep = [m for m in running if m != target]
        protected = self.protected(target)
        return tuple(sorted(_fill_to_fit(target, keep, resources, usage, protected)))

    def protected(self, target: str) -> frozenset[str]:
        return self.pinned - {target}

    def rule_for(self, target: str, other: str) -> str:
        return "resources"


class CapacityGuard:
    """Group or matrix policy plus a hard capacity limit from declared resources."""

    def __init__(self, inner: Policy, resources: Resources) -> None:
        self.inner = inner
        self.resources = resources
        self.name = inner.name

    def evict_for(
        self, target: str, running: Collection[str], usage: Usage = NO_USAGE
    ) -> tuple[str, ...]:
        evict = set(self.inner.evict_for(target, running, usage))
        keep = [m for m in running if m not in evict]
        extra = _fill_to_fit(target, keep, self.resources, usage, self.inner.protected(target))
        return tuple(sorted(evict | set(extra)))

    def protected(self, target: str) -> frozenset[str]:
        return self.inner.protected(target)

    def rule_for(self, target: str, other: str) -> str:
        return self.inner.rule_for(target, other)
