"""`llamaswap check`'s report: plain text for people, JSON for scripts.

The text leads with what was explored, so a pass says how much it is worth, then
one block per finding: the models, what they need against what the machine has, the
YAML rule that allows it and the request sequence that leads there.
"""

from __future__ import annotations

from typing import Any

from .checker import CheckReport
from .findings import Finding, format_amounts

MAX_SHOWN = 20


def _header(report: CheckReport) -> list[str]:
    capacity = format_amounts(report.capacity) if report.capacity else "none declared"
    seed = "derandomized" if report.seed is None else f"seed {report.seed}"
    reach = "all of them" if report.reachable_complete else "search bounded; more exist"
    count = len(report.models)
    shrunk = f" (+{report.shrink_runs} while shrinking)" if report.shrink_runs else ""
    as_written = "" if report.router == "fit" else " as written (capacity guard off)"
    return [
        f"llamaswap check: {report.source or '<config>'}",
        f"  policy:    {report.router} router{as_written}; "
        f"{count} model{'s' if count != 1 else ''}; resources: {capacity}; "
        f"maxWaitSeconds {report.max_wait:g}",
        f"  explored:  {report.examples} examples{shrunk}, {report.steps} steps ({seed}); "
        f"{report.explored_sets} distinct co-running sets reached",
        f"  reachable: {report.reachable_sets} co-running sets by requests ({reach})",
        f"  servable:  {report.servable} of {count} models, alone and beside persistent ones",
        f"  time:      {report.seconds:.1f}s",
    ]


def _finding(finding: Finding) -> list[str]:
    lines = [f"FAIL {finding.kind}: {finding.message}"]
    if finding.models:
        lines.append(f"  models:     {', '.join(finding.models)}")
    if finding.needs:
        lines.append(
            f"  needs:      {format_amounts(finding.needs)} "
            f"(machine: {format_amounts(finding.capacity)})"
        )
    for rule in finding.rules:
        lines.append(f"  allowed by: {rule}")
    if finding.sequence:
        title = {
            "reachability": "shortest request sequence (each request finishes before the next)",
            "servability": "request sequence",
        }.get(finding.source, "shrunk example (Hypothesis)")
        lines.append(f"  {title}:")
        lines += [f"    {step}" for step in finding.sequence]
    if finding.example:
        lines.append("  also found by the exploration; shrunk example (Hypothesis):")
        lines += [f"    {step}" for step in finding.example]
    return lines


def render_text(report: CheckReport) -> str:
    lines = _header(report)
    for finding in report.findings[:MAX_SHOWN]:
        lines += ["", *_finding(finding)]
    hidden = len(report.findings) - MAX_SHOWN
    if hidden > 0:
        lines += ["", f"... and {hidden} more (see --json)"]
    lines.append("")
    if report.ok:
        lines.append("OK: no problem found")
    else:
        count = len(report.findings)
        lines.append(f"{count} problem{'s' if count != 1 else ''} found")
    return "\n".join(lines) + "\n"


def to_json(report: CheckReport) -> dict[str, Any]:
    return {
        "source": report.source,
        "ok": report.ok,
        "router": report.router,
        "models": report.models,
        "capacity": report.capacity or None,
        "max_wait_seconds": report.max_wait,
        "explored": {
            "examples": report.examples,
            "shrink_runs": report.shrink_runs,
            "steps": report.steps,
            "seed": report.seed,
            "co_running_sets": report.explored_sets,
            "reachable_co_running_sets": report.reachable_sets,
            "reachable_complete": report.reachable_complete,
            "servable_models": report.servable,
        },
        "seconds": round(report.seconds, 3),
        "findings": [finding.to_json() for finding in report.findings],
    }
