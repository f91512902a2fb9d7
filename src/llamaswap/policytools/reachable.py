"""Every running set the policy can reach through requests, by breadth-first search.

Start with nothing running; a request for a model that is not running evicts what
`policy.evict_for` says and loads it. Breadth-first order gives each set its shortest
request sequence. This is the policy alone, one request served and finished before
the next: Hypothesis explores the interleavings (parallel swaps, crashes, unloads,
ttl) on top. The search is bounded; `complete` says whether it saw every set.

`capacity_findings` turns the sets over capacity into findings: only the minimal ones
(no smaller set over capacity was reached inside them), each replayed through the real
scheduler to confirm it really happens. A finding lists every rule that lets its
models run together, whichever loads first: all of them must change to forbid it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from llamaswap.scheduling import CannotFit, ModelRules, Policy, Resources, rules_allowing

from .findings import Finding, format_amounts, needs_of, over_capacity
from .simulation import Seconds, run_simulation
from .trace import TraceRequest

DEFAULT_LIMIT = 4000  # running sets; 20 models in one loose group reach 2**20


@dataclass(frozen=True)
class Step:
    """One request in a sequence: `target` loads, `evicted` stop, `kept` keep running."""

    target: str
    evicted: tuple[str, ...]
    kept: tuple[str, ...]


@dataclass
class ReachableSets:
    """Each reached set with the set and request it was first reached from."""

    parents: dict[frozenset[str], tuple[frozenset[str], Step] | None]
    complete: bool

    def __len__(self) -> int:
        return len(self.parents)

    def co_running(self) -> int:
        """How many reachable sets hold two or more models."""
        return sum(1 for models in self.parents if len(models) > 1)

    def path_to(self, models: frozenset[str]) -> list[Step]:
        steps: list[Step] = []
        link = self.parents[models]
        while link is not None:
            parent, step = link
            steps.append(step)
            link = self.parents[parent]
        return steps[::-1]


def reachable_sets(
    policy: Policy, models: Sequence[str], *, limit: int = DEFAULT_LIMIT
) -> ReachableSets:
    empty: frozenset[str] = frozenset()
    parents: dict[frozenset[str], tuple[frozenset[str], Step] | None] = {empty: None}
    frontier = deque([empty])
    while frontier:
        running = frontier.popleft()
        for target in models:
            if target in running:
                continue
            try:
                evict = policy.evict_for(target, running)
            except CannotFit:
                continue
            kept = running - set(evict)
            after = kept | {target}
            if after in parents:
                continue
            if len(parents) >= limit:
                return ReachableSets(parents, complete=False)
            parents[after] = (running, Step(target, tuple(sorted(evict)), tuple(sorted(kept))))
            frontier.append(after)
    return ReachableSets(parents, complete=True)


def minimal_over_capacity(reachable: ReachableSets, resources: Resources) -> list[frozenset[str]]:
    """Reached sets over capacity that contain no smaller reached set over capacity."""
    over = sorted(
        (models for models in reachable.parents if not resources.fits(models)),
        key=lambda models: (len(models), sorted(models)),
    )
    minimal: list[frozenset[str]] = []
    for models in over:
        if not any(smaller < models for smaller in minimal):
            minimal.append(models)
    return minimal


def describe(steps: Sequence[Step]) -> tuple[str, ...]:
    """A request sequence in plain words, one line per request."""
    lines = []
    for number, step in enumerate(steps, start=1):
        line = f"{number}. a request for {step.target} is served: {step.target} loads"
        if step.evicted:
            line += f" after stopping {', '.join(step.evicted)}"
        if step.kept:
            line += f", beside {', '.join(step.kept)}"
        lines.append(line)
    return tuple(lines)


def reproduces(
    rules: Mapping[str, ModelRules], policy: Policy, steps: Sequence[Step], models: frozenset[str]
) -> bool:
    """Does the real scheduler reach `models` when the requests come one after another?"""
    no_ttl = {model: replace(rule, ttl=0.0) for model, rule in rules.items()}
    trace = [TraceRequest(float(i), step.target, 0.0) for i, step in enumerate(steps)]
    result = run_simulation(no_ttl, policy, trace, load=Seconds(0.0), stop=Seconds(0.0))
    return models in result.co_running_sets


def capacity_findings(
    policy: Policy,
    reachable: ReachableSets,
    resources: Resources,
    rules: Mapping[str, ModelRules],
) -> list[Finding]:
    findings = []
    for models in minimal_over_capacity(reachable, resources):
        steps = reachable.path_to(models)
        names = sorted(models)
        sequence = describe(steps)
        if not reproduces(rules, policy, steps, models):
            sequence += ("(from the policy alone: the scheduler did not reproduce this)",)
        findings.append(
            Finding(
                kind="capacity",
                message=(
                    f"{' + '.join(names)} run together needing "
                    f"{format_amounts(needs_of(resources, names))} "
                    f"({over_capacity(resources, names)})"
                ),
                models=tuple(names),
                needs=needs_of(resources, names),
                capacity=dict(resources.capacity),
                rules=rules_allowing(policy, names),
                sequence=sequence,
                source="reachability",
            )
        )
    return findings
