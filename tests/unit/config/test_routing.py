"""§1.8 groups, §1.9 matrix, §1.10 scheduler, and our fit router / resources."""

from __future__ import annotations

import re
import textwrap

import pytest
import yaml

from llamaswap.config import DEFAULT_GROUP, GroupConfig, format_config
from llamaswap.matrix import DslError, compile_program, compile_sets, parse
from tests.unit.config.helpers import assert_problem, load, problems

MODELS = """
models:
  a: {cmd: srv, proxy: "http://h:1", aliases: [alias-a]}
  b: {cmd: srv, proxy: "http://h:2"}
  c: {cmd: srv, proxy: "http://h:3"}
  d: {cmd: srv, proxy: "http://h:4"}
  org/model: {cmd: srv, proxy: "http://h:5"}
"""


def with_models(text: str) -> str:
    return MODELS + textwrap.dedent(text)


# ---- groups ---------------------------------------------------------------------------


def test_default_group_holds_every_model_when_no_groups() -> None:
    routing = load(MODELS).routing
    assert routing.router == "group"
    assert routing.groups == {
        DEFAULT_GROUP: GroupConfig(
            name=DEFAULT_GROUP,
            swap=True,
            exclusive=True,
            persistent=False,
            members=["a", "b", "c", "d", "org/model"],
            yaml_path="",
        )
    }
    assert routing.matrix is None


@pytest.mark.parametrize(
    ("heading", "indent", "base"),
    [
        (
            "routing:\n  router:\n    settings:\n      groups:\n",
            8,
            "routing.router.settings.groups",
        ),
        ("groups:\n", 2, "groups"),
    ],
)
def test_groups_in_both_styles(heading: str, indent: int, base: str) -> None:
    groups = """
        side:
          swap: false
          exclusive: false
          members: [c, a]
        pinned:
          persistent: true
          members: [d]
    """
    text = with_models(heading + textwrap.indent(textwrap.dedent(groups), " " * indent))
    routing = load(text).routing
    assert list(routing.groups) == ["side", "pinned", DEFAULT_GROUP]
    side = routing.groups["side"]
    assert (side.swap, side.exclusive, side.persistent, side.members) == (
        False,
        False,
        False,
        ["c", "a"],
    )
    assert side.yaml_path == f"{base}.side"
    pinned = routing.groups["pinned"]
    assert (pinned.swap, pinned.exclusive, pinned.persistent) == (True, True, True)
    assert routing.groups[DEFAULT_GROUP].members == ["b", "org/model"]
    assert routing.group_of("c") == side
    assert routing.group_of("b") == routing.groups[DEFAULT_GROUP]


@pytest.mark.parametrize(
    ("groups", "path", "fragment"),
    [
        (
            "g: {members: [a, a]}",
            "groups.g.members[1]",
            "duplicate model member a found in group: g",
        ),
        (
            "g1: {members: [a]}\n  g2: {members: [b, a]}",
            "groups.g2.members[1]",
            "model member a is used in multiple groups: g1 and g2",
        ),
        ("g: {members: [nope]}", "groups.g.members[0]", 'no model config for "nope"'),
        ("g: {members: [alias-a]}", "groups.g.members[0]", '"alias-a" is an alias of "a"'),
        ("'(default)': {members: [a]}", "groups.(default)", "reserved"),
        ("g: {swap: sometimes, members: [a]}", "groups.g.swap", "must be true or false"),
    ],
)
def test_group_errors(groups: str, path: str, fragment: str) -> None:
    assert_problem(with_models(f"groups:\n  {groups}\n"), path, fragment)


# ---- matrix DSL -------------------------------------------------------------------------


def expand(
    sets: dict[str, str], variables: dict[str, str] | None = None
) -> dict[str, list[set[str]]]:
    variables = variables or {}
    models = {"a", "b", "c", "d", "e"}

    def resolve(name: str) -> str | None:
        return variables.get(name) or (name if name in models else None)

    compiled = compile_sets(list(sets.items()), resolve)
    assert compiled.errors == []
    program = compile_program(compiled.order, compiled.roots)
    listed = {s.name: program.alternatives(s.root, 1000) or [] for s in program.sets}
    return {name: [set(alt) for alt in listed[name]] for name in compiled.order}


@pytest.mark.parametrize(
    ("dsl", "alternatives"),
    [
        ("a", [{"a"}]),
        ("a & b", [{"a", "b"}]),
        ("a | b", [{"a"}, {"b"}]),
        ("(a | b) & c", [{"a", "c"}, {"b", "c"}]),
        ("(a | b) & (c | d)", [{"a", "c"}, {"a", "d"}, {"b", "c"}, {"b", "d"}]),
        ("a & b | c", [{"a", "b"}, {"c"}]),  # & binds tighter than |
        ("a | b & c", [{"a"}, {"b", "c"}]),
        ("a & a", [{"a"}]),
        ("a | a", [{"a"}]),
        ("((a))", [{"a"}]),
        ("  a&b|c&d  ", [{"a", "b"}, {"c", "d"}]),
    ],
)
def test_dsl_expansion(dsl: str, alternatives: list[set[str]]) -> None:
    assert expand({"s": dsl})["s"] == alternatives


def test_dsl_refs_vars_and_solver_order() -> None:
    result = expand(
        {"first": "+llms & e", "llms": "g | b", "other": "c", "last": "+first | d"},
        {"g": "a"},
    )
    # referenced sets come before their referrers, otherwise definition order
    assert list(result) == ["llms", "first", "other", "last"]
    assert result["first"] == [{"a", "e"}, {"b", "e"}]
    assert result["last"] == [{"a", "e"}, {"b", "e"}, {"d"}]


@pytest.mark.parametrize(
    ("dsl", "fragment"),
    [
        ("", "empty DSL expression"),
        ("   ", "empty DSL expression"),
        ("a &", "unexpected token"),
        ("(a | b", "missing closing parenthesis"),
        ("a b", "unexpected token 'b' after expression"),
        ("a ! b", "unexpected character '!'"),
        ("+", "expected set name after '+'"),
        ("| a", "unexpected token '|'"),
    ],
)
def test_dsl_syntax_errors(dsl: str, fragment: str) -> None:
    with pytest.raises(DslError, match=re.escape(fragment)):
        parse(dsl)


MATRIX = """
routing:
  router:
    use: matrix
    settings:
      matrix:
        vars: {g: a, m: org/model}
        evict_costs: {g: 5, c: 3}
        sets:
          standard: "(g | b) & c"
          solo: "m"
          with_ref: "+standard & d"
"""


def test_matrix_config() -> None:
    routing = load(with_models(MATRIX)).routing
    assert routing.router == "matrix"
    matrix = routing.matrix
    assert matrix is not None
    assert matrix.vars == {"g": "a", "m": "org/model"}
    assert matrix.evict_costs == {"a": 5, "b": 1, "c": 3, "d": 1, "org/model": 1}
    assert [s.name for s in matrix.sets] == ["standard", "solo", "with_ref"]
    assert matrix.sets[0].alternatives == [frozenset({"a", "c"}), frozenset({"b", "c"})]
    assert matrix.sets[1].alternatives == [frozenset({"org/model"})]
    assert matrix.sets[2].alternatives == [frozenset({"a", "c", "d"}), frozenset({"b", "c", "d"})]
    assert matrix.sets[0].yaml_path == "routing.router.settings.matrix.sets.standard"
    assert matrix.sets[0].dsl == "(g | b) & c"
    # the group view still exists: every model in the default group
    assert routing.groups[DEFAULT_GROUP].members == ["a", "b", "c", "d", "org/model"]


def test_matrix_in_the_normalised_output() -> None:
    printed = yaml.safe_load(format_config(load(with_models(MATRIX))))
    sets = printed["routing"]["matrix"]["sets"]
    assert sets[0] == {
        "name": "standard",
        "dsl": "(g | b) & c",
        "alternatives": [["a", "c"], ["b", "c"]],
        "yamlPath": "routing.router.settings.matrix.sets.standard",
    }


def test_legacy_top_level_matrix() -> None:
    routing = load(with_models("matrix:\n  sets:\n    s: a & b\n")).routing
    assert routing.router == "matrix"
    assert routing.matrix is not None
    assert routing.matrix.sets[0].yaml_path == "matrix.sets.s"


def matrix_problem(body: str, path: str, fragment: str) -> None:
    text = with_models("matrix:\n" + textwrap.indent(textwrap.dedent(body), "  "))
    assert_problem(text, "matrix." + path, fragment)


@pytest.mark.parametrize(
    ("body", "path", "fragment"),
    [
        ("vars: {g: a}\n", "sets", "matrix must define at least one set"),
        ("sets: {s: 'a & x'}\n", "sets.s", 'unknown var or model "x"'),
        ("sets: {s: 'alias-a'}\n", "sets.s", 'unknown var or model "alias-a"'),
        ("sets: {s: '+nope | a'}\n", "sets.s", 'references undefined set "nope"'),
        ("sets: {s: '+t', t: '+s'}\n", "sets.s", 'circular reference detected involving set "s"'),
        ("sets: {s: '+s'}\n", "sets.s", "circular reference"),
        ("sets: {s: ''}\n", "sets.s", "empty DSL expression"),
        ("sets: {s: 'a &'}\n", "sets.s", "unexpected token"),
        ("vars: {'bad key!': a}\nsets: {s: a}\n", "vars.bad key!", "1-32 characters long"),
        ("vars: {k: zzz}\nsets: {s: a}\n", "vars.k", 'var key "k" references unknown model "zzz"'),
        ("vars: {k: alias-a}\nsets: {s: a}\n", "vars.k", "is an alias of"),
        (
            "evict_costs: {a: 0}\nsets: {s: a}\n",
            "evict_costs.a",
            "must be a positive integer, got 0",
        ),
        ("evict_costs: {zz: 2}\nsets: {s: a}\n", "evict_costs.zz", 'unknown var or model "zz"'),
        ("sets: [a]\n", "sets", "must be a mapping"),
        ("sets: {s: 'org/model'}\n", "sets.s", "unexpected character '/'"),  # needs a var
    ],
)
def test_matrix_errors(body: str, path: str, fragment: str) -> None:
    matrix_problem(body, path, fragment)


def test_broken_var_is_reported_once() -> None:
    found = problems(with_models("matrix:\n  vars: {k: zzz}\n  sets: {s: 'k & a'}\n"))
    assert [p.path for p in found] == ["matrix.vars.k"]


@pytest.mark.parametrize(
    ("text", "path", "fragment"),
    [
        (
            "groups: {g: {members: [a]}}\nmatrix: {sets: {s: a}}\n",
            "matrix",
            "config cannot use both 'groups' and 'matrix'",
        ),
        (
            "groups: {g: {members: [a]}}\nrouting: {router: {use: group}}\n",
            "routing.router",
            "both the legacy top-level 'matrix'/'groups' keys and the new 'routing.router' block",
        ),
        (
            "routing: {router: {use: matrix}}\n",
            "routing.router.use",
            "routing.router.use is 'matrix' but routing.router.settings.matrix is not set",
        ),
        ("routing: {router: {use: lru}}\n", "routing.router.use", 'unknown router "lru"'),
        (
            "routing: {scheduler: {use: lifo}}\n",
            "routing.scheduler.use",
            'unknown scheduler "lifo"',
        ),
    ],
)
def test_router_selection_errors(text: str, path: str, fragment: str) -> None:
    assert_problem(with_models(text), path, fragment)


def test_section_not_selected_by_use_is_checked_but_only_warned_about() -> None:
    config = load(
        with_models(
            """
            routing:
              router:
                use: group
                settings:
                  groups: {g: {members: [a]}}
                  matrix: {sets: {s: 'a & nope'}}
            """
        )
    )
    assert config.routing.router == "group"
    assert config.routing.matrix is None
    assert any('unknown var or model "nope"' in w and "ignored" in w for w in config.warnings)


# ---- scheduler ----------------------------------------------------------------------


def test_fifo_priorities_and_max_wait() -> None:
    config = load(
        with_models(
            """
            routing:
              scheduler:
                use: fifo
                settings:
                  fifo:
                    priority: {a: 10, b: -1, alias-a: 99}
                    maxWaitSeconds: 12.5
            """
        )
    )
    routing = config.routing
    assert routing.priorities == {"a": 10, "b": -1, "alias-a": 99}
    assert routing.priority("a") == 10
    assert routing.priority("c") == 0
    assert routing.max_wait_seconds == 12.5
    # llama-swap quirk: an alias key is accepted but never matches a model ID
    assert any("'alias-a' is an alias" in w for w in config.warnings)


@pytest.mark.parametrize(
    ("fifo", "path", "fragment"),
    [
        (
            "priority: {zz: 1}",
            "routing.scheduler.settings.fifo.priority.zz",
            'references unknown model "zz"',
        ),
        ("priority: {a: high}", "routing.scheduler.settings.fifo.priority.a", "must be an integer"),
        ("maxWaitSeconds: 0", "routing.scheduler.settings.fifo.maxWaitSeconds", "must be > 0"),
        ("maxWaitSeconds: -5", "routing.scheduler.settings.fifo.maxWaitSeconds", "must be > 0"),
    ],
)
def test_scheduler_errors(fifo: str, path: str, fragment: str) -> None:
    text = with_models(f"routing:\n  scheduler:\n    settings:\n      fifo: {{{fifo}}}\n")
    assert_problem(text, path, fragment)


# ---- fit router and resources ----------------------------------------------------------

FIT = """
resources: {vram: 48, ram: 128}
routing: {router: {use: fit}}
models:
  big: {cmd: srv, proxy: "http://h:1", resources: {vram: 40, ram: 64}}
  small: {cmd: srv, proxy: "http://h:2", resources: {vram: 8}}
"""


def test_fit_router() -> None:
    config = load(FIT)
    assert config.routing.router == "fit"
    assert config.resources == {"vram": 48.0, "ram": 128.0}
    assert config.models["big"].resources == {"vram": 40.0, "ram": 64.0}
    assert config.routing.groups[DEFAULT_GROUP].members == ["big", "small"]


def test_fit_router_requires_machine_resources() -> None:
    assert_problem(
        "routing: {router: {use: fit}}\n",
        "routing.router.use",
        "the fit router needs top-level 'resources'",
    )


def test_fit_router_warns_about_models_without_resources() -> None:
    config = load(FIT + '  free: {cmd: srv, proxy: "http://h:3"}\n')
    assert any("models.free: declares no resources" in w for w in config.warnings)
