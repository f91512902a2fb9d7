"""Generate the typed names of the specs: `StrEnum`s of states, events and tags, and the
states carrying each tag, as Python source that mypy reads.

`llamaswap diagram` writes the result to `src/llamaswap/fsm/names.py` and `--check`
fails when that file differs from what the specs generate, so a state added to a spec
reaches every `match` and every tag set without a hand edit. The same source can be
executed for a spec that is not shipped (`names_namespace`), which is how the tests
prove that a new state needs no code change.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .spec import Spec

HEADER = '''"""Typed names of the lifecycle specs, generated from spec/*.fsm.yaml: do not edit.

Regenerate with `llamaswap diagram`; `llamaswap diagram --check` (part of `make lint`)
fails when this file is stale. Code names states and events through these enums and
asks for tags (`PROCESS_HOLDS_RESOURCES`, ...) instead of listing states.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final
'''


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _enum(class_name: str, doc: str, names: Iterable[str]) -> list[str]:
    lines = ["", "", f"class {class_name}(StrEnum):", f'    """{doc}"""', ""]
    lines += [f'    {name.upper()} = "{name}"' for name in names]
    return lines


def _frozenset(name: str, members: list[str]) -> list[str]:
    """`NAME: Final = frozenset({...})`, wrapped the way `ruff format` wraps it."""
    line = f"{name}: Final = frozenset({{{', '.join(members)}}})"
    if len(line) <= 100:
        return [line]
    return [
        f"{name}: Final = frozenset(",
        "    {",
        *[f"        {m}," for m in members],
        "    }",
        ")",
    ]


def spec_names_source(spec: Spec) -> list[str]:
    """The enums and tag sets of one spec, as source lines."""
    prefix = _camel(spec.name)
    upper = spec.name.upper()
    where = f"spec/{spec.name}.fsm.yaml"
    lines = _enum(f"{prefix}State", f"The states of {where}.", spec.states)
    lines += _enum(f"{prefix}Event", f"The events of {where}.", spec.events)
    if spec.tags:
        lines += _enum(f"{prefix}Tag", f"The state tags of {where}.", spec.tags)
    lines.append("")
    for tag in spec.tags:
        members = [f"{prefix}State.{s.upper()}" for s in spec.tagged(tag)]
        description = spec.tags[tag].description
        lines.append("")
        lines.append(f"# {description}" if description else f"# tag {tag}")
        lines += _frozenset(f"{upper}_{tag.upper()}", members)
    if spec.tags:
        lines += ["", f"{upper}_TAGGED: Final = {{"]
        lines += [f"    {prefix}Tag.{t.upper()}: {upper}_{t.upper()}," for t in spec.tags]
        lines.append("}")
    return lines


def names_source(specs: Iterable[Spec]) -> str:
    """The whole generated module for `specs` (sorted by name, byte-stable)."""
    lines = [HEADER.rstrip("\n")]
    for spec in sorted(specs, key=lambda s: s.name):
        lines += spec_names_source(spec)
    return "\n".join(lines) + "\n"


def names_namespace(spec: Spec) -> dict[str, Any]:
    """Execute the generated source of `spec` and return its names (for specs not shipped)."""
    namespace: dict[str, Any] = {"__name__": f"llamaswap.fsm.generated_{spec.name}"}
    exec(compile(names_source([spec]), f"<names of {spec.name}>", "exec"), namespace)
    return namespace


def names_module_path() -> Path:
    """Where the generated module of the shipped specs lives."""
    return Path(__file__).with_name("names.py")
