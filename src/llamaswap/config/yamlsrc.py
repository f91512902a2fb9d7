"""YAML text -> plain Python tree plus the line every key and list item was written on.

llama-swap decodes with Go's yaml.v3, which follows the YAML 1.2 core schema: only
`true`/`false` are booleans (`yes`, `on` stay strings) and dates stay strings. PyYAML's
default is YAML 1.1, so this loader swaps in 1.2-style implicit resolvers; a config
therefore means the same thing to both programs. Merge keys (`<<: *anchor`) work.

The tree is built from composed nodes rather than `yaml.safe_load` so each path can
be mapped to its line for error messages. Duplicate keys, which yaml.v3 rejects and
PyYAML silently accepts, are reported.

Aliases are bounded. Composing is linear in the text (an alias is a reference to its
anchor's node), but building the tree copies every alias out, so a few hundred bytes of
nested anchors ("billion laughs") would expand to 10^9 nodes and take minutes and
gigabytes. The expanded size is counted on the node graph first (memoized per node, so
linear too) and a document whose aliases would add more than MAX_ALIAS_NODES nodes is
refused. yaml.v3 refuses such documents too ("excessive aliasing"); configs that use
anchors for shared model settings stay far below the limit.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from llamaswap.config.errors import Mark, PathT, Problems

_MERGE_TAG = "tag:yaml.org,2002:merge"
MAX_ALIAS_NODES = 100_000  # nodes that only aliases add: ~0.5 s and ~20 MB to build


# libyaml's parser when PyYAML was built with it: ~5x faster, same nodes and marks.
_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[valid-type,misc]
    """SafeLoader with YAML 1.2 core-schema scalars (see module docstring)."""

    yaml_implicit_resolvers: dict[Any, Any] = {}


for _tag, _pattern, _first in (
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    (
        "tag:yaml.org,2002:int",
        r"^(?:[-+]?[0-9][0-9_]*|0o[0-7_]+|0x[0-9a-fA-F_]+)$",
        "-+0123456789",
    ),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
    (_MERGE_TAG, r"^(?:<<)$", "<"),
):
    _Loader.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))


class _Builder:
    def __init__(self, loader: _Loader, source: str, problems: Problems) -> None:
        self.loader = loader
        self.source = source
        self.problems = problems
        self.marks: dict[PathT, Mark] = {}
        self.active: set[int] = set()

    def mark(self, node: Node) -> Mark:
        return Mark(self.source, node.start_mark.line + 1)

    def convert(self, node: Node, path: PathT) -> Any:
        if isinstance(node, ScalarNode):
            try:
                return self.loader.construct_object(node, deep=True)
            except yaml.YAMLError as exc:
                self.problems.add(path, f"invalid value: {_reason(exc)}", mark=self.mark(node))
                return node.value
        if id(node) in self.active:
            self.problems.add(path, "recursive YAML alias", mark=self.mark(node))
            return None
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                items = []
                for index, child in enumerate(node.value):
                    self.marks[(*path, index)] = self.mark(child)
                    items.append(self.convert(child, (*path, index)))
                return items
            if isinstance(node, MappingNode):
                return self.convert_mapping(node, path)
            return None  # pragma: no cover - the composer only makes the three kinds
        finally:
            self.active.discard(id(node))

    def convert_mapping(self, node: MappingNode, path: PathT) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        own: dict[str, Any] = {}
        own_lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                for source in reversed(self.merge_sources(value_node, path)):
                    merged.update(source)
                continue
            if not isinstance(key_node, ScalarNode):
                self.problems.add(path, "mapping keys must be scalars", mark=self.mark(key_node))
                continue
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in own_lines:
                self.problems.add(
                    (*path, key),
                    f'mapping key "{key}" already defined at line {own_lines[key]}',
                    mark=Mark(self.source, line),
                )
                continue
            own_lines[key] = line
            self.marks[(*path, key)] = Mark(self.source, line)
            own[key] = self.convert(value_node, (*path, key))
        return {**merged, **own}

    def merge_sources(self, node: Node, path: PathT) -> list[dict[str, Any]]:
        nodes = node.value if isinstance(node, SequenceNode) else [node]
        out = []
        for item in nodes:
            if not isinstance(item, MappingNode):
                self.problems.add(path, "a merge key (<<) needs a mapping", mark=self.mark(item))
                continue
            # Merged keys point at the anchor's lines, but never displace the marks of
            # keys the mapping writes itself.
            own_marks, self.marks = self.marks, {}
            out.append(self.convert_mapping(item, path))
            merged_marks, self.marks = self.marks, own_marks
            for mark_path, mark in merged_marks.items():
                self.marks.setdefault(mark_path, mark)
        return out


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def alias_expansion(root: Node) -> tuple[int, int, Node]:
    """(nodes written, nodes once every alias is expanded, the node whose aliases add
    the most). Iterative and memoized per node; a recursive alias counts once."""
    sizes: dict[int, int] = {}
    parents: dict[int, int] = {id(root): 1}
    nodes: dict[int, Node] = {id(root): root}
    on_path: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes.get(id(child), 1) for child in _children(node))
            continue
        if key in sizes or key in on_path:
            continue
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            parents[id(child)] = parents.get(id(child), 0) + 1
            nodes[id(child)] = child
            stack.append((child, False))
    heaviest = max(nodes, key=lambda k: sizes.get(k, 1) * (parents[k] - 1))
    return len(sizes), sizes[id(root)], nodes[heaviest]


def _reason(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        return " ".join(part for part in (exc.context, exc.problem) if part) or str(exc)
    return str(exc)


def parse_yaml(text: str, source: str, problems: Problems) -> tuple[Any, dict[PathT, Mark]]:
    """Parse one document; syntax errors go to `problems` and yield `(None, {})`.

    Returns the plain tree (dicts, lists, str, int, float, bool, None) and the line of
    every mapping key and list item, keyed by path.
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        written, expanded, heaviest = alias_expansion(node)
        if expanded - written > MAX_ALIAS_NODES:
            problems.add(
                (),
                f"YAML aliases would expand this document from {written:,} to {expanded:,} "
                f"nodes, more than the {MAX_ALIAS_NODES:,} aliases may add (an alias bomb?); "
                f"the anchor at line {heaviest.start_mark.line + 1} adds the most",
                mark=Mark(source, 1),
            )
            return None, {}
        builder = _Builder(loader, source, problems)
        builder.marks[()] = builder.mark(node)
        return builder.convert(node, ()), builder.marks
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = Mark(source, mark.line + 1) if mark is not None else Mark(source, 1)
        problems.add((), f"invalid YAML: {_reason(exc)}", mark=line)
    except yaml.YAMLError as exc:
        problems.add((), f"invalid YAML: {exc}", mark=Mark(source, 1))
    finally:
        loader.dispose()
    return None, {}
