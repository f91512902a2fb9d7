"""The lifecycle spec format (`spec/*.fsm.yaml`) and its validation.

A spec is the single source of truth for one state machine: the running class, its
diagram and its fuzz rules are all generated from it. Validation therefore rejects
everything python-statemachine would accept silently or reject obscurely, and every
message names the file, the transition and the problem.
"""

from __future__ import annotations

import keyword
import re
from collections import deque
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from statemachine import StateMachine

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# Attributes of a StateMachine instance: a state or event with one of these names
# would shadow library behaviour.
_RESERVED = frozenset(name for name in dir(StateMachine) if not name.startswith("__"))


class SpecError(ValueError):
    """A spec file that cannot become a machine; `problems` lists every reason."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: invalid lifecycle spec:\n{lines}")


class StateSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""


class TransitionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    event: str
    sources: tuple[str, ...] = Field(alias="from", min_length=1)
    target: str = Field(alias="to")
    description: str = ""

    @field_validator("sources", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    def label(self, index: int) -> str:
        """How error messages name this transition, e.g. `transition 3 (start: a -> b)`."""
        return f"transition {index} ({self.event}: {'|'.join(self.sources)} -> {self.target})"


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    initial: str
    final: tuple[str, ...] = ()
    states: dict[str, StateSpec]
    transitions: tuple[TransitionSpec, ...]
    source: str = Field(default="<memory>", exclude=True)

    @field_validator("final", mode="before")
    @classmethod
    def _final_one_or_many(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @property
    def events(self) -> list[str]:
        """Event names in first-declared order."""
        return list(dict.fromkeys(t.event for t in self.transitions))

    def table(self) -> dict[tuple[str, str], str]:
        """(state, event) -> target: the whole machine as a lookup table."""
        return {(s, t.event): t.target for t in self.transitions for s in t.sources}


def load_spec(path: str | Path) -> Spec:
    """Read and validate one `*.fsm.yaml` file."""
    path = Path(path)
    source = str(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpecError(source, [f"cannot read file: {exc.strerror or exc}"]) from exc
    except yaml.YAMLError as exc:
        raise SpecError(source, [f"not valid YAML: {exc}"]) from exc
    return parse_spec(raw, source=source)


def parse_spec(raw: Any, *, source: str = "<memory>") -> Spec:
    """Validate an already-parsed spec document."""
    if not isinstance(raw, dict):
        raise SpecError(source, ["the document must be a mapping with name, states, transitions"])
    try:
        spec = Spec.model_validate({**raw, "source": source})
    except ValidationError as exc:
        raise SpecError(source, [_describe(err, raw) for err in exc.errors()]) from None
    problems = check_spec(spec)
    if problems:
        raise SpecError(source, problems)
    return spec


def _describe(err: Any, raw: dict[str, Any]) -> str:
    loc = list(err["loc"])
    where = ".".join(str(part) for part in loc)
    if len(loc) >= 2 and loc[0] == "transitions" and isinstance(loc[1], int):
        entries = raw.get("transitions") or []
        entry = entries[loc[1]] if loc[1] < len(entries) else None
        event = entry.get("event", "?") if isinstance(entry, dict) else "?"
        rest = ".".join(str(part) for part in loc[2:])
        where = f"transition {loc[1]} (event {event!r})" + (f" field {rest!r}" if rest else "")
    return f"{where}: {err['msg']}"


def check_spec(spec: Spec) -> list[str]:
    """Every semantic problem with a structurally valid spec (empty when it is sound)."""
    problems: list[str] = []
    states = spec.states
    problems += _check_names(spec)

    if spec.initial not in states:
        problems.append(f"initial: unknown state {spec.initial!r}")
    for name in spec.final:
        if name not in states:
            problems.append(f"final: unknown state {name!r}")
    if spec.initial in spec.final:
        problems.append(f"initial state {spec.initial!r} cannot also be final")

    seen: dict[tuple[str, str], int] = {}
    for index, transition in enumerate(spec.transitions):
        label = transition.label(index)
        for state in (*transition.sources, transition.target):
            if state not in states:
                problems.append(f"{label}: unknown state {state!r}")
        if transition.event in states:
            problems.append(
                f"{label}: event {transition.event!r} is named like a state "
                "(python-statemachine would let the event shadow the state)"
            )
        for state in transition.sources:
            if state in spec.final:
                problems.append(f"{label}: leaves final state {state!r}")
            key = (state, transition.event)
            if key in seen:
                problems.append(
                    f"{label}: state {state!r} already has event {transition.event!r} "
                    f"in transition {seen[key]} (machines must be deterministic)"
                )
            else:
                seen[key] = index
        if len(set(transition.sources)) != len(transition.sources):
            problems.append(f"{label}: a source state is listed twice")

    if problems:  # reachability is meaningless on a broken graph
        return problems
    reachable = _reachable(spec.initial, spec)
    for name in states:
        if name not in reachable:
            problems.append(f"state {name!r} is unreachable from initial state {spec.initial!r}")
    outgoing = {s for s, _ in seen}
    for name in states:
        if name not in spec.final and name not in outgoing:
            problems.append(f"state {name!r} is not final but has no outgoing transition")
    if spec.final:
        reverse = _reverse_reachable(set(spec.final), spec)
        for name in states:
            if name in reachable and name not in reverse:
                problems.append(f"state {name!r} cannot reach a final state")
    return problems


def _check_names(spec: Spec) -> list[str]:
    problems = []
    if not _NAME.match(spec.name):
        problems.append(f"name {spec.name!r} must match {_NAME.pattern}")
    kinds = [("state", name) for name in spec.states] + [("event", e) for e in spec.events]
    for kind, name in kinds:
        if not _NAME.match(name) or keyword.iskeyword(name):
            problems.append(f"{kind} {name!r} must be a lower-case identifier ({_NAME.pattern})")
        elif name in _RESERVED:
            problems.append(f"{kind} {name!r} would shadow StateMachine.{name}")
    return problems


def _reachable(start: str, spec: Spec) -> set[str]:
    table = spec.table()
    seen, todo = {start}, deque([start])
    while todo:
        state = todo.popleft()
        for (source, _), target in table.items():
            if source == state and target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _reverse_reachable(goals: set[str], spec: Spec) -> set[str]:
    table = spec.table()
    seen, changed = set(goals), True
    while changed:
        changed = False
        for (source, _), target in table.items():
            if target in seen and source not in seen:
                seen.add(source)
                changed = True
    return seen
