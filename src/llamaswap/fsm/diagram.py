"""Render specs as diagrams and tables: Graphviz DOT, Mermaid, a Markdown state table, and
SVG/PNG when `dot` is installed.

Output is byte-stable (sorted, no object ids) so the committed files in `docs/diagrams/`
can be compared with what the specs generate (`llamaswap diagram --check`). The
library's own DOT export embeds `id()`s, which is why this module draws its own.
Edge labels read `event [guard] / actions`; a transition without `to` is a self-loop.
"""

from __future__ import annotations

import graphviz

from .spec import Spec, TransitionSpec

TEXT_FORMATS = ("dot", "mermaid", "table")
IMAGE_FORMATS = ("svg", "png")
EXTENSIONS = {"dot": "dot", "mermaid": "mmd", "table": "md", "svg": "svg", "png": "png"}
DEFAULT_COLOUR = "#1565c0"


class RendererMissing(RuntimeError):
    """The Graphviz `dot` binary is needed for images and is not installed."""


def _label(transition: TransitionSpec) -> str:
    label = transition.event
    if transition.cond:
        label += f" [{transition.cond}]"
    if transition.actions:
        label += " / " + ", ".join(transition.actions)
    return label


def _edges(spec: Spec) -> list[tuple[str, str, str]]:
    """(source, target, label) for every transition, sorted."""
    return sorted({(s, t.target_from(s), _label(t)) for t in spec.transitions for s in t.sources})


def state_colour(spec: Spec, state: str) -> str:
    """The colour of the first of the state's tags that has one."""
    for tag in spec.states[state].tags:
        colour = spec.tags[tag].colour
        if colour:
            return colour
    return DEFAULT_COLOUR


def to_dot(spec: Spec) -> str:
    graph = graphviz.Digraph(name=spec.name, comment=f"generated from {spec.name}.fsm.yaml")
    graph.attr(rankdir="LR", label=spec.description, labelloc="t", fontname="Helvetica")
    graph.attr("node", shape="box", style="rounded", fontname="Helvetica")
    graph.attr("edge", fontname="Helvetica", fontsize="10")
    graph.node("__initial__", label="", shape="point", width="0.2")
    for name in sorted(spec.states):
        shape = "doubleoctagon" if name in spec.final else "box"
        state = spec.states[name]
        label = name + (f"\\n({', '.join(state.tags)})" if state.tags else "")
        graph.node(
            name,
            label=label,
            shape=shape,
            tooltip=state.description,
            color=state_colour(spec, name),
        )
    graph.edge("__initial__", spec.initial)
    for source, target, label in _edges(spec):
        graph.edge(source, target, label=label)
    return str(graph.source)


def to_mermaid(spec: Spec) -> str:
    lines = ["---", f"title: {spec.name} ({spec.description})", "---", "stateDiagram-v2"]
    lines.append(f"    [*] --> {spec.initial}")
    for name in sorted(spec.states):
        description = spec.states[name].description.replace(":", " -").replace(";", ",")
        if description:
            lines.append(f"    {name} : {description}")
    for source, target, label in _edges(spec):
        lines.append(f"    {source} --> {target} : {label.replace(':', ' -')}")
    for name in sorted(spec.final):
        lines.append(f"    {name} --> [*]")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or "-"


def to_table(spec: Spec) -> str:
    """The spec as Markdown tables: states, events, transitions (for the docs)."""
    lines = [
        f"# The `{spec.name}` lifecycle",
        "",
        f"Generated from `spec/{spec.name}.fsm.yaml` by `llamaswap diagram`: do not edit.",
        f"{spec.description}.",
        "",
        "## States",
        "",
        "| state | tags | ignores | description |",
        "|---|---|---|---|",
    ]
    for name, state in spec.states.items():
        marks = " (initial)" if name == spec.initial else " (final)" if name in spec.final else ""
        lines.append(
            f"| `{name}`{marks} | {_cell(', '.join(state.tags))} "
            f"| {_cell(', '.join(state.ignore))} | {_cell(state.description)} |"
        )
    if spec.tags:
        lines += ["", "## Tags", "", "| tag | states | meaning |", "|---|---|---|"]
        for tag, tag_spec in spec.tags.items():
            states = ", ".join(f"`{s}`" for s in spec.tagged(tag))
            lines.append(f"| `{tag}` | {_cell(states)} | {_cell(tag_spec.description)} |")
    lines += ["", "## Events", "", "| event | sent by | command | meaning |", "|---|---|---|---|"]
    for event in spec.events:
        info = spec.event(event)
        lines.append(
            f"| `{event}` | {_cell(info.by)} | {_cell(info.command)} | {_cell(info.description)} |"
        )
    lines += [
        "",
        "## Transitions",
        "",
        "| event | from | to | guard | actions | reason | description |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in spec.transitions:
        lines.append(
            f"| `{t.event}` | {', '.join(t.sources)} | {t.target or '(stays)'} "
            f"| {_cell(t.cond or '')} | {_cell(', '.join(t.actions))} "
            f"| {_cell(t.reason)} | {_cell(t.description)} |"
        )
    return "\n".join(lines) + "\n"


def render(spec: Spec, fmt: str) -> bytes:
    """The diagram of `spec` in `fmt` (dot, mermaid, table, svg or png)."""
    if fmt == "dot":
        return to_dot(spec).encode()
    if fmt == "mermaid":
        return to_mermaid(spec).encode()
    if fmt == "table":
        return to_table(spec).encode()
    if fmt in IMAGE_FORMATS:
        try:
            data: bytes = graphviz.Source(to_dot(spec)).pipe(format=fmt)
        except graphviz.ExecutableNotFound as exc:
            raise RendererMissing(
                f"{fmt} output needs the Graphviz 'dot' binary (apt-get install graphviz)"
            ) from exc
        return data
    raise ValueError(f"unknown diagram format {fmt!r}")
