"""What `llamaswap check` reports: one `Finding` per problem, with the why and the how.

A finding names the models involved, what they need together against what the machine
has, the YAML rules that let them run together, and a plain-words request sequence
that leads there, so the user can see the problem and the line to change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from llamaswap.scheduling import Resources


@dataclass(frozen=True)
class Finding:
    """One way the config breaks a promise.

    `sequence` leads to the problem in plain words; `example` is Hypothesis's shrunk
    run when the exploration found the same problem too.
    """

    kind: str
    message: str
    models: tuple[str, ...] = ()
    needs: Mapping[str, float] = field(default_factory=dict)
    capacity: Mapping[str, float] = field(default_factory=dict)
    rules: tuple[str, ...] = ()
    sequence: tuple[str, ...] = ()
    example: tuple[str, ...] = ()
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "message": self.message,
            "models": list(self.models),
            "needs": dict(self.needs) or None,
            "capacity": dict(self.capacity) or None,
            "rules": list(self.rules),
            "sequence": list(self.sequence),
            "example": list(self.example),
            "source": self.source,
        }


def needs_of(resources: Resources | None, models: Iterable[str]) -> dict[str, float]:
    """What `models` need together ({} when no resources are declared)."""
    return {} if resources is None else resources.total(models)


def format_amounts(amounts: Mapping[str, float]) -> str:
    """`{"vram": 28.0, "ram": 4.0}` -> `vram 28, ram 4`."""
    return ", ".join(f"{name} {amount:g}" for name, amount in amounts.items())


def over_capacity(resources: Resources, models: Iterable[str]) -> str:
    """`vram 28 > 24` for every resource the models exceed together."""
    totals = resources.total(models)
    return ", ".join(
        f"{name} {totals.get(name, 0.0):g} > {limit:g}"
        for name, limit in resources.capacity.items()
        if totals.get(name, 0.0) > limit + 1e-9
    )
