"""Models that are never swapped out (`swappable: false`, llama-swap #1127).

`Pinned` wraps any policy: a pinned model is never among the models evicted to make
room for another. Where the inner policy can choose (fit, or the capacity guard's
extra evictions), it chooses among the others; where the rules leave no choice (a
swap group, a matrix), a target that would need a pinned model gone cannot run while
it does, and its request fails with that reason. Only an unload, a reload that
replaces the model, an explicit per-request `keep_alive: 0`, or shutdown stop a
pinned model; it has no ttl of its own (see `Scheduler._limit_of`).
"""

from __future__ import annotations

from collections.abc import Collection

from .policies import NO_USAGE, CannotFit, Policy, Usage


class PinnedInTheWay(CannotFit):
    """The target needs a model gone that has `swappable: false`."""


class Pinned:
    """`inner`, except that the `pinned` models are never evicted."""

    def __init__(self, inner: Policy, pinned: Collection[str]) -> None:
        self.inner = inner
        self.pinned = frozenset(pinned)
        self.name = inner.name

    def evict_for(
        self, target: str, running: Collection[str], usage: Usage = NO_USAGE
    ) -> tuple[str, ...]:
        evict = self.inner.evict_for(target, running, usage)
        blocked = sorted(m for m in evict if m in self.pinned and m != target)
        if blocked:
            names = ", ".join(blocked)
            raise PinnedInTheWay(
                f"model {target} cannot run while {names} runs: {names} has swappable: false "
                "(unload it first)"
            )
        return evict

    def protected(self, target: str) -> frozenset[str]:
        return self.inner.protected(target) | (self.pinned - {target})

    def rule_for(self, target: str, other: str) -> str:
        return self.inner.rule_for(target, other)
