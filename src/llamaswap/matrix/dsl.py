"""The matrix set language (§1.9): `(a | b) & c`, `+other`, parsed and resolved.

Grammar: `or := and ('|' and)*`, `and := atom ('&' atom)*`,
`atom := IDENT | '+' IDENT | '(' or ')'`; identifiers are letters, digits, `_ - .`.
`&` binds tighter than `|`. A set describes alternatives: each a set of real model IDs
that may run together. Sets are compiled in solver order: a set that others reference
(`+name`) comes before them, otherwise definition order, which is the order
llama-swap's solver walks them in for tie-breaking. There is no expansion limit:
the trees are never expanded (see `llamaswap.matrix.program`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field


class DslError(ValueError):
    pass


@dataclass(frozen=True)
class Leaf:
    name: str


@dataclass(frozen=True)
class Ref:
    name: str


@dataclass(frozen=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    children: tuple[Node, ...]


Node = Leaf | Ref | And | Or


def _is_ident(ch: str) -> bool:
    return ch.isalnum() or ch in "_-."


def tokenize(text: str) -> list[tuple[str, str]]:
    """-> [(kind, value)] with kinds ident, ref, &, |, (, )."""
    tokens: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "&|()":
            tokens.append((ch, ch))
            i += 1
        elif ch == "+" or _is_ident(ch):
            start = i + 1 if ch == "+" else i
            end = start
            while end < len(text) and _is_ident(text[end]):
                end += 1
            if end == start:
                raise DslError(f"tokenize: expected set name after '+' at position {start}")
            tokens.append(("ref" if ch == "+" else "ident", text[start:end]))
            i = end
        else:
            raise DslError(f"tokenize: unexpected character {ch!r} at position {i}")
    return tokens


def parse(text: str) -> Node:
    text = text.strip()
    if not text:
        raise DslError("empty DSL expression")
    tokens = tokenize(text)
    pos = 0

    def peek() -> str:
        return tokens[pos][0] if pos < len(tokens) else "end"

    def take() -> tuple[str, str]:
        nonlocal pos
        if pos >= len(tokens):
            return ("end", "")
        pos += 1
        return tokens[pos - 1]

    def parse_or() -> Node:
        children = [parse_and()]
        while peek() == "|":
            take()
            children.append(parse_and())
        return children[0] if len(children) == 1 else Or(tuple(children))

    def parse_and() -> Node:
        children = [parse_atom()]
        while peek() == "&":
            take()
            children.append(parse_atom())
        return children[0] if len(children) == 1 else And(tuple(children))

    def parse_atom() -> Node:
        kind, value = take()
        if kind == "ident":
            return Leaf(value)
        if kind == "ref":
            return Ref(value)
        if kind == "(":
            inner = parse_or()
            if take()[0] != ")":
                raise DslError("parse: missing closing parenthesis")
            return inner
        raise DslError(f"parse: unexpected token {value or 'end of expression'!r}")

    try:
        root = parse_or()
    except RecursionError:
        raise DslError("parse: expression nested too deeply") from None
    if pos < len(tokens):
        raise DslError(f"parse: unexpected token {tokens[pos][1]!r} after expression")
    return root


def _walk(node: Node) -> list[Leaf | Ref]:
    if isinstance(node, Leaf | Ref):
        return [node]
    return [leaf for child in node.children for leaf in _walk(child)]


@dataclass
class CompiledSets:
    order: list[str] = field(default_factory=list)  # solver order
    roots: dict[str, Node] = field(default_factory=dict)  # leaves resolved to model IDs
    errors: list[tuple[str, str]] = field(default_factory=list)  # (set name, message)


# A resolver maps an identifier to a model ID; None = unknown (an error); "" = known
# but already reported as broken (no second error, contributes nothing).
Resolver = Callable[[str], str | None]


def compile_sets(definitions: list[tuple[str, str]], resolve: Resolver) -> CompiledSets:
    """Parse, resolve and order every set; errors are collected, not raised.

    Nothing is expanded: `llamaswap.matrix.program` links the resolved trees
    into a program that is solved symbolically, like llama-swap since its PR #960.
    """
    result = CompiledSets()
    names = {name for name, _ in definitions}
    roots: dict[str, Node] = {}
    deps: dict[str, list[str]] = {}
    for name, dsl in definitions:
        try:
            root = parse(dsl)
        except DslError as exc:
            result.errors.append((name, str(exc)))
            continue
        ok = True
        refs: list[str] = []
        for item in _walk(root):
            if isinstance(item, Leaf):
                if resolve(item.name) is None:
                    result.errors.append((name, f'unknown var or model "{item.name}"'))
                    ok = False
            elif item.name not in names:
                result.errors.append((name, f'references undefined set "{item.name}"'))
                ok = False
            elif item.name not in refs:
                refs.append(item.name)
        if ok:
            roots[name] = _resolved(root, resolve)
            deps[name] = refs

    _order_sets(definitions, roots, deps, result)
    result.roots = {name: roots[name] for name in result.order}
    return result


def _order_sets(
    definitions: list[tuple[str, str]],
    roots: dict[str, Node],
    deps: dict[str, list[str]],
    result: CompiledSets,
) -> None:
    """Depth-first, referenced sets first; a set failing makes its referrers fail.

    Iterative (an explicit stack), so a chain of `+ref`s of any length is ordered.
    """
    state: dict[str, int] = {}  # 1 visiting, 2 done, 3 failed
    frames: list[tuple[str, Iterator[str], list[bool]]] = []

    def enter(name: str) -> bool | None:
        """The set's result when already known, else None (its frame is pushed)."""
        if state.get(name) == 1:
            result.errors.append((name, f'circular reference detected involving set "{name}"'))
            return False
        if state.get(name) in (2, 3):
            return state[name] == 2
        if name not in roots:
            state[name] = 3
            return False
        state[name] = 1
        frames.append((name, iter(deps[name]), [True]))
        return None

    for start, _ in definitions:
        enter(start)
        while frames:
            name, pending, ok = frames[-1]
            dep = next(pending, None)
            if dep is not None:
                known = enter(dep)
                if known is not None:
                    ok[0] = ok[0] and known
                continue
            frames.pop()
            state[name] = 2 if ok[0] else 3
            if ok[0]:
                result.order.append(name)
            if frames:
                frames[-1][2][0] = frames[-1][2][0] and ok[0]


def _resolved(node: Node, resolve: Resolver) -> Node:
    """The same tree with every identifier replaced by its model ID ("" if broken)."""
    if isinstance(node, Leaf):
        return Leaf(resolve(node.name) or "")
    if isinstance(node, Ref):
        return node
    children = tuple(_resolved(child, resolve) for child in node.children)
    return And(children) if isinstance(node, And) else Or(children)
