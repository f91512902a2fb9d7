"""`${env.NAME}` substitution, done on the raw file text before YAML parsing (§1.1).

Working on text (not on the parsed tree) is what llama-swap does, and it matters:
`[${env.KEYS}]` becomes a flow list, and a value can supply YAML syntax. Only
references that YAML sees as content count: one that appears only in a comment is
left alone and may be unset. Values cannot contain line breaks, so line numbers
in later error messages still match the file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from llamaswap.config.errors import Mark, PathT, Problems
from llamaswap.config.yamlsrc import parse_yaml

ENV_REF = re.compile(r"\$\{env\.([A-Za-z_][A-Za-z0-9_]*)\}")


def _references(value: Any, path: PathT, found: dict[str, PathT]) -> None:
    if isinstance(value, str):
        for name in ENV_REF.findall(value):
            found.setdefault(name, path)
    elif isinstance(value, dict):
        for key, item in value.items():
            for name in ENV_REF.findall(key):
                found.setdefault(name, (*path, key))
            _references(item, (*path, key), found)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _references(item, (*path, index), found)


def substitute_env(
    text: str, source: str, environ: Mapping[str, str], problems: Problems
) -> str | None:
    """Replace every needed `${env.X}` in `text`; None (with problems added) on failure."""
    if "${env." not in text:
        return text
    scratch = Problems(source=source)
    tree, marks = parse_yaml(text, source, scratch)
    needed: dict[str, PathT] = {}
    where: dict[str, Mark] = {}
    if scratch:
        # Not valid YAML as written: scan the raw text so the user hears about the
        # missing variable rather than a parse error the substitution might fix.
        for match in ENV_REF.finditer(text):
            needed.setdefault(match.group(1), ())
            where.setdefault(match.group(1), Mark(source, text.count("\n", 0, match.start()) + 1))
    else:
        _references(tree, (), needed)
    ok = True
    for name, path in needed.items():
        mark = where.get(name) or _nearest(marks, path) or Mark(source, 1)
        value = environ.get(name)
        if value is None:
            problems.add(path, f"environment variable '{name}' is not set", mark=mark)
            ok = False
        elif any(ch in value for ch in "\n\r\0"):
            problems.add(
                path,
                f"environment variable '{name}' contains newlines or null bytes "
                "which are not allowed in YAML substitution",
                mark=mark,
            )
            ok = False
        else:
            # Escaped for double-quoted scalars; in plain or single-quoted scalars the
            # escapes stay literal, exactly as in llama-swap.
            escaped = value.replace("\\", "\\\\").replace('"', '\\"')
            text = text.replace(f"${{env.{name}}}", escaped)
    return text if ok else None


def _nearest(marks: dict[PathT, Mark], path: PathT) -> Mark | None:
    for depth in range(len(path), -1, -1):
        if path[:depth] in marks:
            return marks[path[:depth]]
    return None
