"""The symbolic solver against plain oracles, on random matrices (Hypothesis).

It must decide exactly as llama-swap's algorithm written out plainly (`reference`),
and its costs and memberships must match the fully expanded sets.
"""

from __future__ import annotations

from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from llamaswap.matrix import (
    can_contain_all,
    compile_program,
    compile_sets,
    evictions,
    first_set_containing,
    solve,
)
from llamaswap.matrix.dsl import Node
from llamaswap.matrix.program import MatrixProgram
from llamaswap.verification.matrix_truth import MatrixTruth

from .reference import expand_all, reference_solve

MODELS = ("a", "b", "c", "d")
SET_NAMES = ("s0", "s1", "s2", "s3")


def expressions(refs: tuple[str, ...]) -> st.SearchStrategy[str]:
    atoms = st.sampled_from(MODELS) | (
        st.sampled_from(refs).map(lambda r: "+" + r) if refs else st.nothing()
    )
    return st.recursive(
        atoms,
        lambda inner: st.lists(inner, min_size=2, max_size=3).flatmap(
            lambda parts: st.sampled_from([" & ", " | "]).map(lambda op: "(" + op.join(parts) + ")")
        ),
        max_leaves=8,
    )


@st.composite
def matrices(draw: st.DrawFn) -> list[tuple[str, str]]:
    count = draw(st.integers(1, len(SET_NAMES)))
    names = list(SET_NAMES[:count])
    definitions = []
    for index, name in enumerate(names):
        definitions.append((name, draw(expressions(tuple(names[:index])))))
    # definition order differs from solver order when a set references a later one
    return draw(st.permutations(definitions))


def compiled(
    definitions: list[tuple[str, str]],
) -> tuple[list[str], dict[str, Node], MatrixProgram]:
    result = compile_sets(definitions, lambda name: name if name in MODELS else None)
    assert result.errors == []
    return result.order, result.roots, compile_program(result.order, result.roots)


queries = st.tuples(
    st.sampled_from((*MODELS, "z")),  # z is in no set
    st.frozensets(st.sampled_from((*MODELS, "z")), max_size=5),
    st.dictionaries(st.sampled_from(MODELS), st.integers(1, 4)),
)

SETTINGS = settings(max_examples=400, deadline=None, database=None, derandomize=True)


@SETTINGS
@given(matrices(), queries)
# ties follow llama-swap's frontier order: a & c replaces a and goes after b
@example([("s0", "(a | b | a & c) & d & c")], ("d", frozenset({"a", "b", "c"}), {}))
def test_decisions_match_llama_swaps_algorithm(
    definitions: list[tuple[str, str]], query: tuple[str, frozenset[str], dict[str, int]]
) -> None:
    target, running, costs = query
    order, roots, program = compiled(definitions)
    evict, models, set_name, cost = reference_solve(order, roots, target, sorted(running), costs)
    decision = solve(program, target, running, costs)
    assert decision.evict == evict
    assert evictions(program, target, running, costs) == evict
    if target not in running:
        assert decision.models == models
        assert (decision.set.name if decision.set else None) == set_name
        assert decision.cost == cost


@SETTINGS
@given(matrices(), queries)
def test_costs_and_membership_match_the_expanded_sets(
    definitions: list[tuple[str, str]], query: tuple[str, frozenset[str], dict[str, int]]
) -> None:
    target, running, costs = query
    order, roots, program = compiled(definitions)
    assume(sum(program.combinations(s.root) for s in program.sets) <= 2000)
    expanded = expand_all(order, roots)
    decision = solve(program, target, running, costs)
    holding = [alt for _, alt in expanded if target in alt]
    if target in running:
        assert decision.evict == ()
    elif holding:
        cheapest = min(sum(costs.get(m, 1) for m in running - alt) for alt in holding)
        assert decision.cost == cheapest
        kept = (running - set(decision.evict)) | {target}
        assert any(kept <= alt for alt in holding)
        assert set(decision.models) in [set(alt) for alt in holding]
    else:
        assert decision.evict == tuple(sorted(running)) and decision.set is None
    together = running | {target}
    allowed = any(together <= alt for _, alt in expanded)
    assert can_contain_all(program, together) == allowed
    assert MatrixTruth(program).allows(together) == allowed
    assert MatrixTruth(program, listed_limit=0).allows(together) == allowed
    first = next((name for name, alt in expanded if together <= alt), None)
    found = first_set_containing(program, together)
    assert (found.name if found else None) == first
