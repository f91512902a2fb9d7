"""Render specs as diagrams: Graphviz DOT, Mermaid, and SVG/PNG when `dot` is installed.

Output is byte-stable (sorted, no object ids) so the committed files in `docs/diagrams/`
can be compared with what the specs generate (`llamaswap diagram --check`). The
library's own DOT export embeds `id()`s, which is why this module draws its own.
"""

from __future__ import annotations

import graphviz

from .spec import Spec

TEXT_FORMATS = ("dot", "mermaid")
IMAGE_FORMATS = ("svg", "png")
EXTENSIONS = {"dot": "dot", "mermaid": "mmd", "svg": "svg", "png": "png"}


class RendererMissing(RuntimeError):
    """The Graphviz `dot` binary is needed for images and is not installed."""


def _edges(spec: Spec) -> list[tuple[str, str, str]]:
    """(source, target, event) for every transition, sorted."""
    return sorted({(s, t.target, t.event) for t in spec.transitions for s in t.sources})


def to_dot(spec: Spec) -> str:
    graph = graphviz.Digraph(name=spec.name, comment=f"generated from {spec.name}.fsm.yaml")
    graph.attr(rankdir="LR", label=spec.description, labelloc="t", fontname="Helvetica")
    graph.attr("node", shape="box", style="rounded", fontname="Helvetica")
    graph.attr("edge", fontname="Helvetica", fontsize="10")
    graph.node("__initial__", label="", shape="point", width="0.2")
    for name in sorted(spec.states):
        shape = "doubleoctagon" if name in spec.final else "box"
        tooltip = spec.states[name].description
        graph.node(name, label=name, shape=shape, tooltip=tooltip)
    graph.edge("__initial__", spec.initial)
    for source, target, event in _edges(spec):
        graph.edge(source, target, label=event)
    return str(graph.source)


def to_mermaid(spec: Spec) -> str:
    lines = ["---", f"title: {spec.name} ({spec.description})", "---", "stateDiagram-v2"]
    lines.append(f"    [*] --> {spec.initial}")
    for name in sorted(spec.states):
        description = spec.states[name].description.replace(":", " -").replace(";", ",")
        if description:
            lines.append(f"    {name} : {description}")
    for source, target, event in _edges(spec):
        lines.append(f"    {source} --> {target} : {event}")
    for name in sorted(spec.final):
        lines.append(f"    {name} --> [*]")
    return "\n".join(lines) + "\n"


def render(spec: Spec, fmt: str) -> bytes:
    """The diagram of `spec` in `fmt` (dot, mermaid, svg or png)."""
    if fmt == "dot":
        return to_dot(spec).encode()
    if fmt == "mermaid":
        return to_mermaid(spec).encode()
    if fmt in IMAGE_FORMATS:
        try:
            data: bytes = graphviz.Source(to_dot(spec)).pipe(format=fmt)
        except graphviz.ExecutableNotFound as exc:
            raise RendererMissing(
                f"{fmt} output needs the Graphviz 'dot' binary (apt-get install graphviz)"
            ) from exc
        return data
    raise ValueError(f"unknown diagram format {fmt!r}")
