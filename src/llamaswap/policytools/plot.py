"""Timeline plot of simulation runs (PNG or SVG), when matplotlib is installed.

matplotlib is an optional extra: it is imported only here, only when a plot is asked
for, and its absence costs a one-line notice, never the simulation's results. One
panel per policy, one row per model: a span per lifecycle state, in the state's colour
from spec/process.fsm.yaml, with a tick for each request's arrival.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llamaswap.fsm import shipped_spec
from llamaswap.fsm.diagram import state_colour

from .simulation import SimulationResult

FORMATS = (".png", ".svg")
MISSING = "notice: --plot needs matplotlib (pip install matplotlib); no plot written"


def _pyplot() -> Any | None:
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        return None
    matplotlib.use("Agg")  # files only, never a window
    return importlib.import_module("matplotlib.pyplot")


def plot_timeline(results: Sequence[SimulationResult], path: str | Path) -> str | None:
    """Write the plot to `path`; returns a notice instead when it cannot be drawn."""
    target = Path(path)
    if target.suffix.lower() not in FORMATS:
        return f"notice: --plot writes {' or '.join(FORMATS)} files, not {target.name}"
    plt = _pyplot()
    if plt is None:
        return MISSING
    if not results:
        return "notice: no policy ran; no plot written"
    models = sorted(
        {m for r in results for m in r.models()} | {s.model for r in results for s in r.spans}
    )
    rows = {model: index for index, model in enumerate(models)}
    figure, axes = plt.subplots(
        len(results),
        1,
        sharex=True,
        squeeze=False,
        figsize=(10, 1.2 + 0.4 * len(models) * len(results)),
    )
    spec = shipped_spec("process")
    colours = {span.state: state_colour(spec, span.state) for r in results for span in r.spans}
    for axis, result in zip(axes[:, 0], results, strict=True):
        for span in result.spans:
            axis.broken_barh(
                [(span.start, max(span.end - span.start, 1e-3))],
                (rows[span.model] - 0.35, 0.7),
                color=colours[span.state],
            )
        arrivals = [(r.arrival, rows[r.model]) for r in result.requests if r.model in rows]
        if arrivals:
            axis.scatter(*zip(*arrivals, strict=True), marker="|", color="black", s=60, zorder=3)
        axis.set_yticks(range(len(models)), models)
        axis.set_ylim(-0.6, len(models) - 0.4)
        axis.set_title(
            f"{result.policy}: {result.swaps} swaps, {result.loading_seconds:g}s loading",
            fontsize="medium",
        )
    shown = sorted(colours, key=list(spec.states).index)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[state]) for state in shown]
    figure.legend(handles, shown, loc="upper right", ncols=max(len(shown), 1))
    axes[-1, 0].set_xlabel("seconds (virtual clock)")
    figure.tight_layout(rect=(0, 0, 1, 0.95))
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target)
    plt.close(figure)
    return None
