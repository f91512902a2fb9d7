"""A compiled matrix: the sets' expression trees linked into one immutable DAG.

A set is never expanded into its combinations (ten slots of ten alternatives each
are ten billion sets, but 111 nodes here). Each node is a leaf (one model), an `&`
(one alternative of every child, together) or an `|` (one child's alternatives).
A `+ref` is not a node: it points at the referenced set's root, so the referenced
tree is shared and solved once per query. Nodes are numbered children first, so a
set's nodes always come after the nodes of the sets it references.

Every model named in a set has one bit (`bit_of`); each node knows the union of the
bits below it (`support`), which lets a query skip whole subtrees that name none of
the models it is about. Queries are in `llamaswap.matrix.solver`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product

from llamaswap.matrix.dsl import And, Leaf, Node, Or, Ref

LEAF, AND, OR = 0, 1, 2

# `config check` lists a set's alternatives when it has at most this many combinations.
LISTED_COMBINATIONS = 100


@dataclass(frozen=True)
class ProgramSet:
    """One named set: its root node, in the solver's order."""

    name: str
    root: int
    yaml_path: str = ""


@dataclass(frozen=True)
class MatrixProgram:
    """The immutable node table of every set; safe to share between queries."""

    sets: tuple[ProgramSet, ...] = ()
    kinds: tuple[int, ...] = ()
    children: tuple[tuple[int, ...], ...] = ()
    leaf_models: tuple[str, ...] = ()  # the model of a leaf ("" for a broken var), else ""
    support: tuple[int, ...] = ()  # bits of every model below the node
    models: tuple[str, ...] = ()  # bit i is models[i]
    bit_of: Mapping[str, int] = field(init=False, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bit_of", {m: 1 << i for i, m in enumerate(self.models)})

    def set_named(self, name: str) -> ProgramSet | None:
        return next((s for s in self.sets if s.name == name), None)

    def mask(self, models: Iterable[str]) -> int:
        """The bits of `models`; a model no set names has none."""
        bits = 0
        for model in models:
            bits |= self.bit_of.get(model, 0)
        return bits

    def combinations(self, root: int) -> int:
        """How many alternatives the expression spells out, repeats included."""
        counts: dict[int, int] = {}
        for index in self.post_order(root):
            kind = self.kinds[index]
            if kind == LEAF:
                counts[index] = 1
            elif kind == OR:
                counts[index] = sum(counts[c] for c in self.children[index])
            else:
                total = 1
                for child in self.children[index]:
                    total *= counts[child]
                counts[index] = total
        return counts[root]

    def alternatives(self, root: int, limit: int) -> list[frozenset[str]] | None:
        """The distinct alternatives in expansion order, or None past `limit` combinations.

        For people (`config check`) and small ground truths; no decision reads this.
        """
        if self.combinations(root) > limit:
            return None
        expanded: dict[int, list[frozenset[str]]] = {}
        for index in self.post_order(root):
            kind = self.kinds[index]
            if kind == LEAF:
                model = self.leaf_models[index]
                expanded[index] = [frozenset({model}) if model else frozenset()]
            elif kind == OR:
                parts = (alt for child in self.children[index] for alt in expanded[child])
                expanded[index] = list(dict.fromkeys(parts))
            else:
                combos = product(*(expanded[child] for child in self.children[index]))
                expanded[index] = list(dict.fromkeys(frozenset().union(*c) for c in combos))
        return expanded[root]

    def first_alternative(self, index: int) -> set[str]:
        """The models of the node's first alternative (what the solver keeps for a
        subtree that names no model of the query)."""
        models: set[str] = set()
        stack = [index]
        while stack:
            node = stack.pop()
            kind = self.kinds[node]
            if kind == LEAF:
                if self.leaf_models[node]:
                    models.add(self.leaf_models[node])
            elif kind == OR:
                stack.append(self.children[node][0])
            else:
                stack.extend(self.children[node])
        return models

    def post_order(self, root: int) -> list[int]:
        """Every node under `root` once, children before parents."""
        seen: set[int] = set()
        order: list[int] = []
        stack: list[tuple[int, bool]] = [(root, False)]
        while stack:
            index, expanded = stack.pop()
            if expanded:
                order.append(index)
                continue
            if index in seen:
                continue
            seen.add(index)
            stack.append((index, True))
            stack.extend((child, False) for child in reversed(self.children[index]))
        return order


class _Builder:
    """Numbers the nodes of resolved trees; `+ref` becomes the referenced root."""

    def __init__(self) -> None:
        self.kinds: list[int] = []
        self.children: list[tuple[int, ...]] = []
        self.leaf_models: list[str] = []
        self.support: list[int] = []
        self.models: dict[str, int] = {}
        self.roots: dict[str, int] = {}

    def add(self, node: Node) -> int:
        if isinstance(node, Ref):
            return self.roots[node.name]
        if isinstance(node, Leaf):
            bit = 0
            if node.name:
                bit = 1 << self.models.setdefault(node.name, len(self.models))
            return self._node(LEAF, (), node.name, bit)
        children = tuple(self.add(child) for child in node.children)
        support = 0
        for child in children:
            support |= self.support[child]
        return self._node(AND if isinstance(node, And) else OR, children, "", support)

    def _node(self, kind: int, children: tuple[int, ...], model: str, support: int) -> int:
        self.kinds.append(kind)
        self.children.append(children)
        self.leaf_models.append(model)
        self.support.append(support)
        return len(self.kinds) - 1


def compile_program(
    order: Sequence[str], roots: Mapping[str, Node], yaml_paths: Mapping[str, str] | None = None
) -> MatrixProgram:
    """Link resolved trees (leaves are model IDs) into a program, sets in solver order.

    `order` must list a referenced set before the sets that reference it.
    """
    builder = _Builder()
    sets = []
    for name in order:
        root = builder.add(roots[name])
        builder.roots[name] = root
        sets.append(ProgramSet(name, root, (yaml_paths or {}).get(name, "")))
    return MatrixProgram(
        sets=tuple(sets),
        kinds=tuple(builder.kinds),
        children=tuple(builder.children),
        leaf_models=tuple(builder.leaf_models),
        support=tuple(builder.support),
        models=tuple(builder.models),
    )


def listed_program(sets: Iterable[tuple[str, frozenset[str], str]]) -> MatrixProgram:
    """A program from explicit alternatives (set name, models, YAML path), in order.

    Consecutive alternatives of one set become one `|` of `&`s, so the solver picks
    among them exactly as it would among the expanded alternatives of that set.
    """
    grouped: list[tuple[str, list[Node], str]] = []
    for name, models, yaml_path in sets:
        alternative = And(tuple(Leaf(m) for m in sorted(models)))
        if grouped and grouped[-1][0] == name and grouped[-1][2] == yaml_path:
            grouped[-1][1].append(alternative)
        else:
            grouped.append((name, [alternative], yaml_path))
    builder = _Builder()
    program_sets = []
    for name, alternatives, yaml_path in grouped:
        root = builder.add(Or(tuple(alternatives)))
        program_sets.append(ProgramSet(name, root, yaml_path))
    return MatrixProgram(
        sets=tuple(program_sets),
        kinds=tuple(builder.kinds),
        children=tuple(builder.children),
        leaf_models=tuple(builder.leaf_models),
        support=tuple(builder.support),
        models=tuple(builder.models),
    )
