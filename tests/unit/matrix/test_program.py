"""The compiled matrix and its solver, with the scenarios of llama-swap's own tests.

Ported from llama-swap's `internal/matrix/dsl_test.go`, `internal/config/matrix_test.go`
and `internal/router/matrix_test.go` at PR #960, which replaced expansion with this
solver, plus what llamaswap adds (counting, listing, explicit alternatives).
"""

from __future__ import annotations

import time

import pytest

from llamaswap.matrix import (
    can_contain_all,
    compile_program,
    compile_sets,
    evictions,
    first_set_containing,
    listed_program,
    solve,
)
from llamaswap.matrix.program import MatrixProgram


def program_of(*sets: tuple[str, str], variables: dict[str, str] | None = None) -> MatrixProgram:
    """Sets over any lower-case identifier; `variables` map a var to a model first."""
    variables = variables or {}

    def resolve(name: str) -> str | None:
        return variables.get(name) or (name if name.replace("-", "").isalnum() else None)

    compiled = compile_sets(list(sets), resolve)
    assert compiled.errors == []
    return compile_program(compiled.order, compiled.roots)


def listed(program: MatrixProgram, name: str) -> list[list[str]]:
    found = program.set_named(name)
    assert found is not None
    return [sorted(alt) for alt in program.alternatives(found.root, 1000) or []]


def product_matrix(dimensions: int, choices: int) -> MatrixProgram:
    """`target & (model-0-0 | ... ) & ...`: choices ** dimensions combinations."""
    groups = [
        "(" + " | ".join(f"model-{d}-{c}" for c in range(choices)) + ")" for d in range(dimensions)
    ]
    return program_of(("large", "target & " + " & ".join(groups)))


# ---- llama-swap internal/matrix/dsl_test.go ---------------------------------------------


@pytest.mark.parametrize(
    ("dsl", "expected"),
    [
        ("a", [["a"]]),
        ("a & b", [["a", "b"]]),
        ("a | b | c", [["a"], ["b"], ["c"]]),
        ("(a | b) & (c | d)", [["a", "c"], ["a", "d"], ["b", "c"], ["b", "d"]]),
        ("a | b & c", [["a"], ["b", "c"]]),
        ("a & a", [["a"]]),
    ],
)
def test_expressions(dsl: str, expected: list[list[str]]) -> None:
    program = program_of(("test", dsl))
    assert listed(program, "test") == expected
    # solving for each alternative's models keeps exactly that alternative
    for alternative in expected:
        target, *others = alternative
        assert evictions(program, target, others, {}) == ()


REF_SETS = (("llms", "g | q | m"), ("with_tts", "+llms & v"), ("mega", "+with_tts & e"))


def test_references() -> None:
    program = program_of(
        ("llms", "g | q | m"), ("with_tts", "+llms & v"), ("mega", "+with_tts & e")
    )
    assert listed(program, "mega") == [["e", "g", "v"], ["e", "q", "v"], ["e", "m", "v"]]


def test_overlapping_references() -> None:
    program = program_of(("base", "a & b"), ("extended", "target & +base & b"))
    decision = solve(program, "target", ["a", "b"], {})
    assert decision.evict == ()
    assert decision.models == ("a", "b", "target")


def test_no_expansion_limit() -> None:
    program = product_matrix(6, 10)  # 1,000,000 combinations
    running = [f"model-{d}-9" for d in range(6)] + ["outside"]
    decision = solve(program, "target", running, {})
    assert decision.evict == ("outside",)
    assert decision.set is not None and decision.set.name == "large"
    assert len(decision.models) == 7


def test_more_than_64_relevant_models() -> None:
    models = ["target"] + [f"model-{i}" for i in range(70)]
    program = program_of(("wide", " & ".join(models)))
    decision = solve(program, "target", [*models[1:], "outside"], {})
    assert decision.evict == ("outside",)
    assert len(decision.models) == 71


def test_dominated_projection() -> None:
    program = program_of(("preferred", "target & (a | (a & b))"))
    decision = solve(program, "target", ["a", "b"], {})
    assert decision.evict == ()
    assert decision.models == ("a", "b", "target")


def test_target_absent() -> None:
    program = program_of(("known", "a & b"))
    decision = solve(program, "missing", ["a", "b"], {})
    assert decision.evict == ("a", "b")
    assert decision.models == ("missing",)
    assert decision.set is None


@pytest.mark.parametrize(
    ("sets", "fragment"),
    [
        ([("s", "")], "empty DSL expression"),
        ([("s", "(a")], "missing closing parenthesis"),
        ([("s", "a)")], "unexpected token"),
        ([("s", "()")], "unexpected token"),
        ([("s", "missing")], "unknown var or model"),
        ([("s", "+missing")], "references undefined set"),
        ([("a", "+b"), ("b", "+a")], "circular reference"),
    ],
)
def test_compile_errors(sets: list[tuple[str, str]], fragment: str) -> None:
    compiled = compile_sets(sets, lambda name: name if name == "a" else None)
    assert any(fragment in message for _, message in compiled.errors)


# ---- llama-swap internal/config/matrix_test.go ------------------------------------------

VARS = {"g": "gemma", "q": "qwen", "m": "mistral", "v": "voxtral", "L": "llama70B"}


def test_basic_sets_and_evict_costs() -> None:
    program = program_of(("standard", "(g | q | m) & v"), ("full", "L"), variables=VARS)
    costs = {"llama70B": 30, "voxtral": 50}
    decision = solve(program, "gemma", ["voxtral"], costs)
    assert decision.set is not None and decision.set.name == "standard"
    assert decision.models == ("gemma", "voxtral")
    assert decision.evict == ()
    decision = solve(program, "llama70B", ["voxtral"], costs)
    assert decision.set is not None and decision.set.name == "full"
    assert decision.models == ("llama70B",)
    assert decision.evict == ("voxtral",)


def test_with_ref() -> None:
    variables = {"g": "gemma", "q": "qwen", "m": "mistral", "v": "voxtral", "e": "reranker"}
    program = program_of(
        ("llms", "g | q | m"),
        ("with_tts", "+llms & v"),
        ("mega", "+with_tts & e"),
        variables=variables,
    )
    decision = solve(program, "reranker", ["gemma", "voxtral"], {})
    assert decision.set is not None and decision.set.name == "mega"
    assert decision.models == ("gemma", "reranker", "voxtral")
    assert decision.evict == ()


def test_mixed_vars_and_model_names_deduplicate_after_resolution() -> None:
    gemma = {"g": "gemma"}
    program = program_of(("base", "g | qwen"), ("combo", "+base & voxtral"), variables=gemma)
    decision = solve(program, "qwen", ["voxtral"], {})
    assert decision.set is not None and decision.set.name == "combo"
    assert decision.models == ("qwen", "voxtral")
    program = program_of(("combo", "g & gemma"), variables=gemma)
    assert solve(program, "gemma", [], {}).models == ("gemma",)


# ---- llama-swap internal/router/matrix_test.go ------------------------------------------


def test_ties_go_to_the_first_defined_set() -> None:
    program = program_of(("first", "a & b"), ("second", "a & c"))
    decision = solve(program, "a", [], {})
    assert decision.set is not None and decision.set.name == "first"


def test_evict_costs_steer_to_the_cheaper_set() -> None:
    program = program_of(("a_with_c", "a & c"), ("a_with_b", "a & b"))
    decision = solve(program, "a", ["b", "c"], {"b": 10, "c": 1})
    assert decision.set is not None and decision.set.name == "a_with_b"
    assert decision.evict == ("c",)


def test_multi_set_matrix_of_the_benchmarks() -> None:
    """llama-swap's BenchmarkMatrixSwapPath matrix: 8 sets `target-N & (10 a) & (10 b)`."""
    sets = [
        (
            f"set-{s}",
            f"target-{s} & ("
            + " | ".join(f"a-{s}-{c}" for c in range(10))
            + ") & ("
            + " | ".join(f"b-{s}-{c}" for c in range(10))
            + ")",
        )
        for s in range(8)
    ]
    program = program_of(*sets)
    costs = {
        f"{k}-{s}-{c}": 2 if k == "a" else 5 for k in "ab" for s in range(8) for c in range(10)
    }
    running = ["a-3-1", "b-3-2", "a-0-1", "b-7-4", "outside-matrix"]
    decision = solve(program, "target-3", running, costs)
    assert decision.set is not None and decision.set.name == "set-3"
    assert decision.evict == ("a-0-1", "b-7-4", "outside-matrix")
    assert decision.cost == 2 + 5 + 1
    assert decision.models == ("a-3-1", "b-3-2", "target-3")


# ---- ours ----------------------------------------------------------------------------


def test_combinations_are_counted_not_expanded() -> None:
    program = product_matrix(10, 10)
    root = program.sets[0].root
    assert program.combinations(root) == 10**10
    assert program.alternatives(root, 1000) is None
    assert len(program.kinds) == 1 + 10 * 11 + 1  # target, ten `|` of ten, one `&`


def test_a_big_matrix_compiles_and_solves_fast() -> None:
    started = time.perf_counter()
    program = product_matrix(10, 10)
    running = ["model-0-3", "model-4-4", "model-9-1", "outside"]
    assert evictions(program, "model-4-7", running, {}) == ("model-4-4", "outside")
    assert evictions(program, "target", running, {}) == ("outside",)
    assert time.perf_counter() - started < 1.0  # a sanity bound; it takes milliseconds


def test_membership_and_the_first_set_holding_models() -> None:
    program = program_of(("pair", "a & b"), ("wide", "(a | b) & c"))
    assert can_contain_all(program, {"a", "b"})
    assert can_contain_all(program, {"b", "c"})
    assert not can_contain_all(program, {"a", "b", "c"})
    assert not can_contain_all(program, {"a", "z"})
    assert can_contain_all(program, set())
    found = first_set_containing(program, {"a", "c"})
    assert found is not None and found.name == "wide"
    assert first_set_containing(program, {"c", "z"}) is None


def test_explicit_alternatives_keep_their_order_and_set_names() -> None:
    program = listed_program(
        [
            ("s", frozenset({"a", "b"}), "matrix.sets.s"),
            ("s", frozenset({"a", "c"}), "matrix.sets.s"),
            ("t", frozenset({"a", "d"}), "matrix.sets.t"),
        ]
    )
    assert [(s.name, s.yaml_path) for s in program.sets] == [
        ("s", "matrix.sets.s"),
        ("t", "matrix.sets.t"),
    ]
    assert listed(program, "s") == [["a", "b"], ["a", "c"]]
    decision = solve(program, "a", ["b", "c", "d"], {})
    assert decision.evict == ("c", "d")  # three ties at cost 2: the first alternative wins
    assert solve(program, "a", ["d"], {}).set == program.sets[1]


def test_programs_compare_by_content() -> None:
    assert program_of(("s", "a & b")) == program_of(("s", "a & b"))
    assert program_of(("s", "a & b")) != program_of(("s", "a | b"))


def test_a_chain_of_1500_references_orders_and_solves_without_recursion() -> None:
    # defined top first, so ordering walks the whole chain; only `top` names t, so
    # solving for t walks it too
    chain = [(f"s{i}", f"+s{i + 1} & a") for i in range(1500)] + [("s1500", "a")]
    program = program_of(("top", "+s0 & t"), *chain)
    assert [s.name for s in program.sets][:2] == ["s1500", "s1499"]
    assert program.sets[-1].name == "top"
    assert evictions(program, "t", ["a", "b"], {}) == ("b",)


def test_an_expression_nested_too_deeply_is_an_error_not_a_crash() -> None:
    compiled = compile_sets([("s", "(" * 2000 + "a" + ")" * 2000)], lambda name: name)
    assert compiled.errors == [("s", "parse: expression nested too deeply")]
