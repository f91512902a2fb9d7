"""Questions asked of a compiled matrix, answered without expanding it.

This is llama-swap's symbolic solver (its PR #960), step for step, so decisions and
ties come out the same. A query only cares about a few models: the target and the
running ones. Every alternative of a node is projected onto their bits, so
alternatives that differ only in other models collapse into one state (the first
seen), and a state whose models are a subset of another's is dropped (evict costs are
positive, so keeping more running is never worse). Work depends on how many distinct
projections survive, not on how many combinations the sets spell out.

Ours on top, with the same results: subtrees that name none of the query's models
are not walked (they project to nothing, and their first alternative is what
llama-swap's witness keeps), and bits are the program's own rather than per query.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeAlias

from llamaswap.matrix.program import LEAF, OR, MatrixProgram, ProgramSet

# Which alternative a state came from: a model, a node whose first alternative it is
# (a subtree the query does not look into), or the two halves of an `&`.
Witness: TypeAlias = "str | int | tuple[Witness, Witness] | None"
State: TypeAlias = tuple[int, Witness]


@dataclass(frozen=True)
class Decision:
    """What running `target` takes: the models to stop, and the alternative that allows it.

    `models` is the whole alternative chosen, sorted (llama-swap's "target set"); `set`
    is None when the target is in no set and runs alone. `cost` is what `evict` costs.
    """

    evict: tuple[str, ...]
    models: tuple[str, ...]
    set: ProgramSet | None = None
    cost: int = 0


class _Projection:
    """One query's memo: each node's alternatives projected onto the relevant bits."""

    __slots__ = ("memo", "program", "relevant")

    def __init__(self, program: MatrixProgram, relevant: int) -> None:
        self.program = program
        self.relevant = relevant
        self.memo: dict[int, list[State]] = {}

    def states(self, root: int) -> list[State]:
        """The node's states, children first; iterative, so `+ref` chains of any length."""
        memo = self.memo
        if root in memo:
            return memo[root]
        program, relevant = self.program, self.relevant
        support, kinds, children = program.support, program.kinds, program.children
        stack = [root]
        while stack:
            index = stack[-1]
            if index in memo:
                stack.pop()
                continue
            if not support[index] & relevant:
                memo[index] = [(0, index)]
            elif kinds[index] == LEAF:
                memo[index] = [(support[index], program.leaf_models[index])]
            else:
                pending = []
                for child in children[index]:
                    if child in memo:
                        continue
                    if not support[child] & relevant:
                        memo[child] = [(0, child)]
                    elif kinds[child] == LEAF:
                        memo[child] = [(support[child], program.leaf_models[child])]
                    else:
                        pending.append(child)
                if pending:
                    stack.extend(reversed(pending))
                    continue
                memo[index] = self._combine(index)
            stack.pop()
        return memo[root]

    def _combine(self, index: int) -> list[State]:
        """An `|` or `&` node's states from its children's (all already known)."""
        memo, children = self.memo, self.program.children[index]
        out: list[State]
        if self.program.kinds[index] == OR:
            out = []
            for child in children:
                for state in memo[child]:
                    _add(out, state)
            return out
        out = [(0, None)]
        for child in children:
            right = memo[child]
            if len(right) == 1 and right[0][0] == 0:
                # union with nothing: the states stay distinct and maximal, in order
                out = [(mask, (witness, right[0][1])) for mask, witness in out]
                continue
            combined: list[State] = []
            for left_mask, left_witness in out:
                for right_mask, right_witness in right:
                    _add(combined, (left_mask | right_mask, (left_witness, right_witness)))
            out = combined
        return out


def _add(states: list[State], candidate: State) -> None:
    """Keep `states` the maximal projections, in first-seen order (llama-swap's frontier).

    A candidate inside a state already kept is dropped; states inside the candidate
    make way for it, and it goes last.
    """
    mask = candidate[0]
    covers = False
    for other, _ in states:
        if mask | other == other:
            return
        if other | mask == mask:
            covers = True
    if covers:
        states[:] = [state for state in states if state[0] | mask != mask]
    states.append(candidate)


_Choice: TypeAlias = tuple[ProgramSet, State, int]


def _choose(
    program: MatrixProgram, target_bit: int, others: list[tuple[str, int, int]]
) -> _Choice | None:
    """The first cheapest state holding the target, over the sets in solver order."""
    relevant = target_bit
    for _, bit, _ in others:
        relevant |= bit
    projection = _Projection(program, relevant)
    best: _Choice | None = None
    for program_set in program.sets:
        if not program.support[program_set.root] & target_bit:
            continue
        for state in projection.states(program_set.root):
            mask = state[0]
            if not mask & target_bit:
                continue
            cost = sum(c for _, bit, c in others if not bit & mask)
            if best is None or cost < best[2]:
                best = (program_set, state, cost)
    return best


def _others(
    program: MatrixProgram, running: Collection[str], costs: Mapping[str, int]
) -> list[tuple[str, int, int]]:
    """(model, bit, evict cost) of each running model, sorted; no bit outside every set."""
    bit_of = program.bit_of
    return [(model, bit_of.get(model, 0), costs.get(model, 1)) for model in sorted(running)]


def evictions(
    program: MatrixProgram, target: str, running: Collection[str], costs: Mapping[str, int]
) -> tuple[str, ...]:
    """`solve(...).evict` without building the chosen alternative (the scheduler's path)."""
    if target in running:
        return ()
    others = _others(program, running, costs)
    target_bit = program.bit_of.get(target, 0)
    best = _choose(program, target_bit, others) if target_bit else None
    mask = best[1][0] if best is not None else 0
    return tuple(model for model, bit, _ in others if not bit & mask)


def solve(
    program: MatrixProgram, target: str, running: Collection[str], costs: Mapping[str, int]
) -> Decision:
    """The cheapest alternative holding `target`; ties go to the first in solver order.

    A running model no alternative keeps is evicted; a model missing from `costs`
    costs 1. A target that is already running evicts nothing.
    """
    if target in running:
        found = first_set_containing(program, running)
        return Decision((), tuple(sorted(running)), found)
    others = _others(program, running, costs)
    target_bit = program.bit_of.get(target, 0)
    best = _choose(program, target_bit, others) if target_bit else None
    if best is None:
        evict = tuple(model for model, _, _ in others)
        return Decision(evict, (target,), None, sum(c for _, _, c in others))
    chosen, (mask, witness), cost = best
    evict = tuple(model for model, bit, _ in others if not bit & mask)
    return Decision(evict, _flatten(program, witness), chosen, cost)


def first_set_containing(program: MatrixProgram, models: Iterable[str]) -> ProgramSet | None:
    """The first set (solver order) with one alternative holding all of `models`."""
    required = 0
    for model in models:
        bit = program.bit_of.get(model, 0)
        if not bit:
            return None
        required |= bit
    if not required:
        return None
    projection = _Projection(program, required)
    for program_set in program.sets:
        if program.support[program_set.root] & required != required:
            continue
        if any(mask == required for mask, _ in projection.states(program_set.root)):
            return program_set
    return None


def can_contain_all(program: MatrixProgram, models: Collection[str]) -> bool:
    """May `models` all run at once? (llama-swap's CanContainAll; nothing is always fine.)"""
    return not models or first_set_containing(program, models) is not None


def _flatten(program: MatrixProgram, witness: Witness) -> tuple[str, ...]:
    models: set[str] = set()
    stack = [witness]
    while stack:
        item = stack.pop()
        if item is None:
            continue
        if isinstance(item, str):
            if item:
                models.add(item)
        elif isinstance(item, int):
            models |= program.first_alternative(item)
        else:
            stack.extend(item)
    return tuple(sorted(models))
