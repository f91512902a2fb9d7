"""Test oracles for the matrix solver, written the plain way.

- `reference_solve`: llama-swap's symbolic algorithm (PR #960) as it reads, on the
  parsed trees: per-query bit numbering, every node walked, a witness per state, no
  shortcuts. The solver must agree with it exactly, ties and chosen set included.
- `expand_all`: the sets expanded into every alternative (what llamaswap did before);
  the cheapest cost and "may these run together" must agree with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import product

from llamaswap.matrix.dsl import Leaf, Node, Or, Ref


def _subset(a: int, b: int) -> bool:
    return a & ~b == 0


def _add(
    states: list[tuple[int, object]], candidate: tuple[int, object]
) -> list[tuple[int, object]]:
    for mask, _ in states:
        if _subset(candidate[0], mask):
            return states
    kept = [s for s in states if not _subset(s[0], candidate[0])]
    kept.append(candidate)
    return kept


def _models(witness: object, out: set[str]) -> None:
    if isinstance(witness, str):
        if witness:
            out.add(witness)
    elif isinstance(witness, tuple):
        for part in witness:
            _models(part, out)


def reference_solve(
    order: Sequence[str],
    roots: Mapping[str, Node],
    target: str,
    running: Sequence[str],
    costs: Mapping[str, int],
) -> tuple[tuple[str, ...], tuple[str, ...], str | None, int]:
    """(evict sorted, chosen alternative sorted, set name, cost) as llama-swap decides."""
    if target in running:
        return (), tuple(sorted(running)), None, 0
    bits: dict[str, int] = {}
    for model in [target, *running]:
        bits.setdefault(model, len(bits))
    memo: dict[int, list[tuple[int, object]]] = {}

    def evaluate(node: Node) -> list[tuple[int, object]]:
        if id(node) in memo:
            return memo[id(node)]
        states: list[tuple[int, object]]
        if isinstance(node, Leaf):
            mask = 1 << bits[node.name] if node.name in bits else 0
            states = [(mask, node.name)]
        elif isinstance(node, Ref):
            states = evaluate(roots[node.name])
        elif isinstance(node, Or):
            states = []
            for child in node.children:
                for state in evaluate(child):
                    states = _add(states, state)
        else:
            states = [(0, None)]
            for child in node.children:
                combined: list[tuple[int, object]] = []
                for left in states:
                    for right in evaluate(child):
                        combined = _add(combined, (left[0] | right[0], (left[1], right[1])))
                states = combined
        memo[id(node)] = states
        return states

    best: tuple[int, str, object] | None = None
    best_mask = 0
    for name in order:
        for mask, witness in evaluate(roots[name]):
            if not mask & (1 << bits[target]):
                continue
            cost = sum(costs.get(m, 1) for m in running if not mask & (1 << bits[m]))
            if best is None or cost < best[0]:
                best, best_mask = (cost, name, witness), mask
    if best is None:
        total = sum(costs.get(m, 1) for m in running)
        return tuple(sorted(running)), (target,), None, total
    evict = tuple(sorted(m for m in running if not best_mask & (1 << bits[m])))
    chosen: set[str] = set()
    _models(best[2], chosen)
    return evict, tuple(sorted(chosen)), best[1], best[0]


def expand_all(order: Sequence[str], roots: Mapping[str, Node]) -> list[tuple[str, frozenset[str]]]:
    """Every (set name, alternative) in expansion order."""
    memo: dict[int, list[frozenset[str]]] = {}

    def expand(node: Node) -> list[frozenset[str]]:
        if id(node) in memo:
            return memo[id(node)]
        out: list[frozenset[str]]
        if isinstance(node, Leaf):
            out = [frozenset({node.name}) if node.name else frozenset()]
        elif isinstance(node, Ref):
            out = expand(roots[node.name])
        elif isinstance(node, Or):
            out = [alt for child in node.children for alt in expand(child)]
        else:
            parts = [expand(child) for child in node.children]
            out = [frozenset().union(*combo) for combo in product(*parts)]
        memo[id(node)] = out
        return out

    return [(name, alt) for name in order for alt in expand(roots[name])]
