"""MatrixPolicy on matrices written as DSL, past llama-swap's old 10,000-combination limit."""

from __future__ import annotations

import textwrap

from llamaswap.config import parse_config
from llamaswap.matrix import compile_program, compile_sets
from llamaswap.scheduling import MatrixAlternative, MatrixPolicy, Usage
from llamaswap.scheduling.from_config import build_policy
from tests.unit.matrix.configs import big_matrix

DESK = "routing.router.settings.matrix.sets.desk"


def big() -> MatrixPolicy:
    """The big matrix's policy as written (no capacity guard)."""
    policy = build_policy(parse_config(big_matrix(), source="big.yaml"), guard=False)
    assert isinstance(policy, MatrixPolicy)
    return policy


def dsl_policy(*sets: tuple[str, str], costs: dict[str, int] | None = None) -> MatrixPolicy:
    compiled = compile_sets(list(sets), lambda name: name)
    return MatrixPolicy(compile_program(compiled.order, compiled.roots), costs or {})


def test_a_model_replaces_the_one_in_its_slot_and_keeps_the_others() -> None:
    policy = big()
    running = {"chat-7b", "embed-a", "tts-b"}
    assert policy.evict_for("chat-30b", running) == ("chat-7b",)
    assert policy.evict_for("embed-b", running) == ("embed-a",)
    assert policy.evict_for("vision-xl", running) == ()
    assert policy.evict_for("embed-a", running) == ()  # already running


def test_a_model_of_another_set_or_of_none_runs_alone() -> None:
    policy = big()
    running = {"chat-7b", "embed-a", "tts-b"}
    assert policy.evict_for("big70", running) == ("chat-7b", "embed-a", "tts-b")
    assert policy.evict_for("lonely", running) == ("chat-7b", "embed-a", "tts-b")
    assert policy.evict_for("chat-7b", {"big70"}) == ("big70",)


def test_evict_costs_decide_which_model_of_a_crowded_slot_stays() -> None:
    # chat-30b (c30: 5) and chat-14b (3) share a slot; only one of them can stay
    policy = big()
    assert policy.evict_for("embed-a", {"chat-30b", "chat-14b", "tts-a"}) == ("chat-14b",)
    assert policy.evict_for("embed-a", {"chat-7b", "chat-14b"}) == ("chat-7b",)


def test_with_the_capacity_guard_the_least_recently_used_model_makes_room() -> None:
    policy = build_policy(parse_config(big_matrix(), source="big.yaml"))
    usage = Usage(last_used={"embed-a": 5.0, "vision-xl": 1.0})
    # the desk keeps vision-xl beside chat-30b, but 30 + 20 + 1 > 48
    assert policy.evict_for("chat-30b", {"vision-xl", "embed-a"}, usage) == ("vision-xl",)


def test_rules_and_membership_name_the_set() -> None:
    policy = big()
    assert policy.rule_for("chat-30b", "vision-xl") == DESK
    assert policy.rule_for("big70", "chat-7b") == "matrix.sets"
    assert policy.allows({"chat-30b", "vision-xl", "embed-b", "search-a"})
    assert not policy.allows({"chat-30b", "chat-7b"})
    assert not policy.allows({"lonely", "chat-7b"})


def test_ties_follow_llama_swaps_solver_not_the_expansion_order() -> None:
    # Expanded, `(a | b | a & c) & t & c` lists {a,c,t} before {b,c,t}; llama-swap's
    # solver projects `a` away once `a & c` (a superset, with c running) comes, so its
    # first cheapest state is {b,c,t}: a is evicted, not b. We decide as llama-swap does.
    policy = dsl_policy(("s", "(a | b | a & c) & t & c"))
    assert policy.evict_for("t", {"a", "b", "c"}) == ("a",)
    # with c not running the two orders agree
    assert policy.evict_for("t", {"a", "b"}) == ("b",)
    # listed alternatives keep their own order: the first cheapest wins
    listed = MatrixPolicy(
        [MatrixAlternative("s", frozenset("act")), MatrixAlternative("s", frozenset("bct"))], {}
    )
    assert listed.evict_for("t", {"a", "b", "c"}) == ("b",)


def test_refs_share_a_set_and_costs_pick_between_sets() -> None:
    policy = dsl_policy(
        ("llms", "g | q | m"),
        ("with_tts", "+llms & v"),
        ("mega", "+with_tts & e"),
        costs={"v": 50},
    )
    assert policy.evict_for("e", {"g", "v"}) == ()
    assert policy.evict_for("q", {"g", "v", "e"}) == ("g",)
    assert policy.rule_for("e", "v") == "matrix.sets.mega"
    assert policy.rule_for("g", "v") == "matrix.sets.with_tts"


def test_the_policy_runs_the_normalised_matrix_of_a_legacy_config() -> None:
    text = textwrap.dedent(
        """
        models:
          a: {cmd: "srv --port ${PORT}"}
          b: {cmd: "srv --port ${PORT}"}
          c: {cmd: "srv --port ${PORT}"}
        matrix:
          sets:
            pair: "a & b"
            wide: "a & c"
        """
    )
    policy = build_policy(parse_config(text, source="t.yaml"))
    assert policy.evict_for("c", {"a", "b"}) == ("b",)
    assert policy.rule_for("a", "c") == "matrix.sets.wide"
