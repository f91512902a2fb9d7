"""W6: YAML aliases are bounded, so a few hundred bytes cannot take minutes and gigabytes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from llamaswap.config.errors import Problems
from llamaswap.config.yamlsrc import MAX_ALIAS_NODES, parse_yaml

from .helpers import load, one_problem

REFERENCE = Path("/work/shared/reference/llama-swap-config.example.yaml")


def billion_laughs(levels: int = 9) -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels):
        name, previous = chr(ord("a") + level), chr(ord("a") + level - 1)
        lines.append(f"{name}: &{name} [{','.join([f'*{previous}'] * 9)}]")
    return "\n".join(lines) + "\n"


def test_the_billion_laughs_fails_fast_and_says_why() -> None:
    text = billion_laughs()
    assert len(text) < 450
    started = time.monotonic()
    problem = one_problem(text)
    assert time.monotonic() - started < 0.5
    assert problem.path == "" and problem.line == 1
    assert "YAML aliases would expand this document from 28 to 490,329,064 nodes" in problem.message
    assert "the anchor at line 8 adds the most" in problem.message


def test_the_limit_is_on_what_aliases_add() -> None:
    """`b` aliases a list of k scalars m times: aliases add m * (k + 1) nodes."""
    k = 999

    def document(m: int) -> str:
        return f"a: &a [{','.join(['x'] * k)}]\nb: [{','.join(['*a'] * m)}]\n"

    at_limit = MAX_ALIAS_NODES // (k + 1)
    problems = Problems()
    tree, _ = parse_yaml(document(at_limit), "t.yaml", problems)
    assert not problems and len(tree["b"]) == at_limit
    problems = Problems()
    assert parse_yaml(document(at_limit + 1), "t.yaml", problems) == (None, {})
    assert "more than the 100,000 aliases may add" in str(problems.error())


def test_a_large_document_without_aliases_is_not_limited() -> None:
    items = ",".join(str(i) for i in range(MAX_ALIAS_NODES + 10))
    problems = Problems()
    tree, _ = parse_yaml(f"big: [{items}]\n", "t.yaml", problems)
    assert not problems and len(tree["big"]) == MAX_ALIAS_NODES + 10


def test_shared_settings_through_anchors_still_load() -> None:
    config = load(
        """
        x-args: &args ["--ctx-size", "4096", "--threads", "4"]
        x-model: &model
          proxy: http://127.0.0.1:9000
          ttl: 60
          env: ["A=1"]
          aliases: []
        models:
          a: {<<: *model, cmd: srv-a}
          b: {<<: *model, cmd: srv-b, ttl: 5}
          c:
            <<: *model
            cmd: srv-c
        groups:
          g: {members: [a, b, c], swap: true}
        x-also: [*args, *args, *model]
        """
    )
    assert [config.models[m].ttl for m in "abc"] == [60, 5, 60]
    assert config.models["c"].env == ["A=1"]


def test_a_recursive_alias_is_still_reported_as_such() -> None:
    problems = Problems()
    parse_yaml("a: &a [1, *a]\n", "t.yaml", problems)
    assert "recursive YAML alias" in str(problems.error())


@pytest.mark.skipif(not REFERENCE.exists(), reason="llama-swap's example config not present")
def test_llama_swaps_example_config_still_parses() -> None:
    problems = Problems()
    tree, _ = parse_yaml(REFERENCE.read_text(), str(REFERENCE), problems)
    assert not problems and tree["models"]
