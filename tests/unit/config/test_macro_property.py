"""Random macro declarations expand exactly as a small independent reference says.

The loader applies macros as llama-swap does: the list `[MODEL_ID, globals (model
overrides in place), model-only...]` is applied last-to-first as replace-all passes.
The reference below states the same rule declaratively instead: a reference inside
the value of the macro at position i resolves only to a macro at a position < i
(anything may use the field's macros), and a string that is exactly one resolvable
reference takes that macro's typed value. Anything unresolved must be reported as
`unknown macro '${name}'` on the field's path.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from llamaswap.config import ConfigError, parse_config

REF = re.compile(r"\$\{([A-Za-z0-9_-]+)\}")
NAMES = ["ma", "mb", "mc", "md", "me", "mf"]
UNDECLARED = "zz"

Value = str | int | bool


def _text(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def reference_expand(template: Value, decls: list[tuple[str, Value]]) -> Value:
    position = {name: index for index, (name, _) in enumerate(decls)}

    def resolve(name: str, limit: int) -> Value | None:
        index = position.get(name)
        if index is None or index >= limit:
            return None
        value = decls[index][1]
        return expand(value, index) if isinstance(value, str) else value

    def expand(text: str, limit: int) -> Value:
        exact = REF.fullmatch(text)
        if exact:
            value = resolve(exact.group(1), limit)
            return text if value is None else value

        def one(match: re.Match[str]) -> str:
            value = resolve(match.group(1), limit)
            return match.group(0) if value is None else _text(value)

        return REF.sub(one, text)

    return expand(template, len(decls)) if isinstance(template, str) else template


def decl_list(
    model_id: str, globals_: list[tuple[str, Value]], own: list[tuple[str, Value]]
) -> list[tuple[str, Value]]:
    decls: list[tuple[str, Value]] = [("MODEL_ID", model_id), *globals_]
    for name, value in own:
        index = next((i for i, (n, _) in enumerate(decls) if n == name), None)
        if index is None:
            decls.append((name, value))
        else:
            decls[index] = (name, value)
    return decls


REFERABLE = [*NAMES, UNDECLARED, "MODEL_ID"]


@st.composite
def templates(draw: st.DrawFn, *, own_name: str | None = None) -> str:
    """Strings of lowercase words and references; never empty, never a self-reference."""
    refs = [name for name in REFERABLE if name != own_name]
    parts = draw(
        st.lists(
            st.one_of(
                st.text("xyz", min_size=1, max_size=3),
                st.sampled_from(refs).map(lambda n: f"${{{n}}}"),
            ),
            min_size=1,
            max_size=4,
        )
    )
    if not any(not part.startswith("${") for part in parts):
        parts.append("q")  # a literal keeps every expansion non-empty
    if len(parts) == 2 and draw(st.booleans()):
        parts = parts[:1] if parts[0].startswith("${") else parts  # sometimes one exact ref
    return "".join(parts)


@st.composite
def declarations(draw: st.DrawFn) -> list[tuple[str, Value]]:
    names = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=len(NAMES)))
    out: list[tuple[str, Value]] = []
    for name in names:
        value: Value = draw(
            st.one_of(
                st.integers(0, 99),
                st.booleans(),
                templates(own_name=name),
                templates(own_name=name),
            )
        )
        out.append((name, value))
    return out


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    globals_=declarations(),
    own=declarations(),
    description=templates(),
    meta=templates(),
)
def test_macros_expand_like_the_reference(
    globals_: list[tuple[str, Value]],
    own: list[tuple[str, Value]],
    description: str,
    meta: str,
) -> None:
    document: dict[str, Any] = {
        "macros": dict(globals_),
        "models": {
            "m1": {
                "macros": dict(own),
                "cmd": "srv",
                "proxy": "http://127.0.0.1:9000",
                "description": description,
                "metadata": {"v": meta},
            }
        },
    }
    text = yaml.safe_dump(document, sort_keys=False)
    decls = decl_list("m1", globals_, own)
    expected = {
        "models.m1.description": reference_expand(description, decls),
        "models.m1.metadata.v": reference_expand(meta, decls),
    }
    expected_errors = set()
    for path, value in expected.items():
        if isinstance(value, str) and REF.search(value):
            name = REF.findall(value)[0]
            expected_errors.add((path, f"unknown macro '${{{name}}}'"))

    event("unresolved reference" if expected_errors else "fully expanded")
    try:
        config = parse_config(text)
    except ConfigError as exc:
        got = {(p.path, p.message) for p in exc.problems}
        assert got == expected_errors, text
        return
    assert not expected_errors, text
    model = config.models["m1"]
    # description is a string field: a typed value arrives as its text
    assert model.description == _text(expected["models.m1.description"]).strip()
    assert model.metadata["v"] == expected["models.m1.metadata.v"]
