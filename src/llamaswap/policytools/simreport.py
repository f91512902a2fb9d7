"""`llamaswap simulate`'s outputs: one table comparing policies, JSON, or CSV.

Columns are policies, so "which policy swaps less for my traffic" reads across a row.
A policy the config cannot run (matrix without a matrix, fit without resources)
keeps its column, marked `error`; the command prints why on stderr.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .findings import format_amounts
from .metrics import milliseconds
from .simulation import Seconds, SimulationResult


@dataclass
class Comparison:
    """Every policy's run over one trace (or why a policy could not run)."""

    source: str
    trace: str
    requests: int
    load: Seconds
    stop: Seconds
    order: list[str] = field(default_factory=list)  # policies as asked for
    results: dict[str, SimulationResult] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def ran(self) -> list[SimulationResult]:
        """The results of the policies that could run, in the order asked for."""
        return [self.results[name] for name in self.order if name in self.results]

    def models(self) -> list[str]:
        return sorted({m for result in self.results.values() for m in result.models()})


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _rows(result: SimulationResult) -> list[tuple[str, str]]:
    waits = result.waits()
    return [
        ("swaps", str(result.swaps)),
        ("evictions", str(result.evictions)),
        ("models loaded (times)", str(sum(result.loads.values()))),
        ("seconds loading", _num(result.loading_seconds)),
        ("requests served", str(result.served())),
        ("requests rejected", str(result.rejected())),
        ("requests never resolved", str(len(result.unresolved()))),
        ("waited > maxWaitSeconds", str(len(result.starved()))),
        ("wait p50 (s)", _num(waits.p50)),
        ("wait p95 (s)", _num(waits.p95)),
        ("wait max (s)", _num(waits.max)),
        ("longest queue", str(result.max_queue)),
        ("last request done at (s)", _num(result.end)),
    ]


ROW_LABELS = [label for label, _ in _rows(SimulationResult(policy="", max_wait=0.0))]


def _per_model(result: SimulationResult, model: str) -> str:
    waits = result.waits(model)
    if waits.count == 0:
        return "-"
    return f"{_num(waits.p50)}/{_num(waits.p95)}/{_num(waits.max)}"


def _seconds(seconds: Seconds) -> str:
    overrides = f" ({format_amounts(seconds.per_model)})" if seconds.per_model else ""
    return f"{seconds.default:g}s{overrides}"


def _align(table: list[list[str]]) -> list[str]:
    """First column left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return [
        "  ".join(
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        ).rstrip()
        for row in table
    ]


def render_table(comparison: Comparison) -> str:
    bound = {f"{r.max_wait:g}s" for r in comparison.results.values()}
    lines = [
        f"llamaswap simulate: {comparison.source or '<config>'}",
        f"  trace: {comparison.trace} ({comparison.requests} requests)",
        f"  load: {_seconds(comparison.load)}; stop: {_seconds(comparison.stop)}"
        + (f"; maxWaitSeconds: {', '.join(sorted(bound))}" if bound else ""),
        "",
    ]
    columns = comparison.order
    cells = {
        name: [value for _, value in _rows(comparison.results[name])]
        if name in comparison.results
        else ["error", *("" for _ in ROW_LABELS[1:])]
        for name in columns
    }
    table = [["", *columns]]
    table += [[label, *(cells[name][i] for name in columns)] for i, label in enumerate(ROW_LABELS)]
    models = comparison.models()
    if models:
        table.append(["wait p50/p95/max (s)", *("" for _ in columns)])
        for model in models:
            table.append(
                [
                    f"  {model}",
                    *(
                        _per_model(comparison.results[name], model)
                        if name in comparison.results
                        else ""
                        for name in columns
                    ),
                ]
            )
    lines += _align(table)
    return "\n".join(lines) + "\n"


def result_json(result: SimulationResult) -> dict[str, Any]:
    return {
        "swaps": result.swaps,
        "evictions": result.evictions,
        "loads": dict(sorted(result.loads.items())),
        "loading_seconds": milliseconds(result.loading_seconds),
        "stopping_seconds": milliseconds(result.stopping_seconds),
        "served": result.served(),
        "rejected": result.rejected(),
        "rejected_by_code": result.rejections(),
        "unresolved": len(result.unresolved()),
        "max_wait_seconds": result.max_wait,
        "starved": [r.id for r in result.starved()],
        "wait": result.waits().to_json(),
        "longest_queue": result.max_queue,
        "end": milliseconds(result.end),
        "models": {
            model: {
                "requests": len(result.of_model(model)),
                "served": result.served(model),
                "rejected": result.rejected(model),
                "starved": len(result.starved(model)),
                "loads": result.loads.get(model, 0),
                "wait": result.waits(model).to_json(),
            }
            for model in result.models()
        },
    }


def to_json(comparison: Comparison) -> dict[str, Any]:
    return {
        "source": comparison.source,
        "trace": comparison.trace,
        "requests": comparison.requests,
        "load_seconds": _seconds_json(comparison.load),
        "stop_seconds": _seconds_json(comparison.stop),
        "policies": {result.policy: result_json(result) for result in comparison.ran()},
        "errors": dict(comparison.errors),
    }


def _seconds_json(seconds: Seconds) -> dict[str, Any]:
    return {"default": seconds.default, "per_model": dict(seconds.per_model)}


CSV_FIELDS = (
    "policy",
    "model",
    "requests",
    "served",
    "rejected",
    "unresolved",
    "starved",
    "loads",
    "wait_p50",
    "wait_p95",
    "wait_max",
    "swaps",
    "loading_seconds",
)


def _csv_row(result: SimulationResult, model: str | None) -> Mapping[str, Any]:
    waits = result.waits(model)
    loads = sum(result.loads.values()) if model is None else result.loads.get(model, 0)
    return {
        "policy": result.policy,
        "model": model or "(all)",
        "requests": len(result.of_model(model)),
        "served": result.served(model),
        "rejected": result.rejected(model),
        "unresolved": len(result.unresolved(model)),
        "starved": len(result.starved(model)),
        "loads": loads,
        "wait_p50": milliseconds(waits.p50),
        "wait_p95": milliseconds(waits.p95),
        "wait_max": milliseconds(waits.max),
        "swaps": result.swaps if model is None else "",
        "loading_seconds": milliseconds(result.loading_seconds) if model is None else "",
    }


def to_csv(results: Sequence[SimulationResult]) -> str:
    """One row per policy and model, plus an `(all)` row per policy."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for result in results:
        writer.writerow(_csv_row(result, None))
        for model in result.models():
            writer.writerow(_csv_row(result, model))
    return out.getvalue()
