"""The lifecycle spec format (`spec/*.fsm.yaml`) and its validation.

A spec is the single source of truth for one state machine: the running class, its
diagram, its typed names, its metrics, its UI legend and its fuzz rules are all
generated from it. Validation therefore rejects everything python-statemachine would
accept silently or reject obscurely, and every message names the file, the transition
and the problem.

Beyond states and transitions a spec may declare:

- `tags`: named sets of states that code asks about instead of listing states
  (`holds_resources`, `serving`, ...), with an optional display `colour`;
- `events`: who sends each event (`by`) and, for operator actions, the `command` that
  sends it (the UI's buttons);
- per state, `ignore`: events that are accepted there and change nothing (everything
  else that has no transition is an error), and `enter`/`exit` actions;
- per transition, `do` (actions, bound by name on the machine's model), `cond` (a guard,
  also by name), `reason` (a message template filled from the event's fields) and no
  `to` for a transition that stays in its state.
"""

from __future__ import annotations

import keyword
import re
import string
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


def _listed(value: Any) -> Any:
    """YAML convenience: a single name where a list is expected."""
    return (value,) if isinstance(value, str) else value


class SpecError(ValueError):
    """A spec file that cannot become a machine; `problems` lists every reason."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: invalid lifecycle spec:\n{lines}")


class TagSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    colour: str = ""


class EventSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    by: str = ""  # who sends it: router, upstream, operator, ...
    command: str = ""  # the operator action that sends it (a UI button), if any


class StateSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    tags: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    enter: tuple[str, ...] = ()
    exit: tuple[str, ...] = ()

    @field_validator("tags", "ignore", "enter", "exit", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return _listed(value)


class TransitionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    event: str
    sources: tuple[str, ...] = Field(alias="from", min_length=1)
    target: str | None = Field(default=None, alias="to")
    actions: tuple[str, ...] = Field(default=(), alias="do")
    cond: str | None = None
    reason: str = ""
    description: str = ""

    @field_validator("sources", "actions", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return _listed(value)

    @property
    def internal(self) -> bool:
        """No `to`: the machine stays where it is (no exit or enter actions run)."""
        return self.target is None

    def target_from(self, source: str) -> str:
        return source if self.target is None else self.target

    def label(self, index: int) -> str:
        """How error messages name this transition, e.g. `transition 3 (start: a -> b)`."""
        target = self.target or "(stays)"
        return f"transition {index} ({self.event}: {'|'.join(self.sources)} -> {target})"


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    initial: str
    final: tuple[str, ...] = ()
    tags: dict[str, TagSpec] = Field(default_factory=dict)
    events_declared: dict[str, EventSpec] = Field(default_factory=dict, alias="events")
    states: dict[str, StateSpec]
    transitions: tuple[TransitionSpec, ...]
    source: str = Field(default="<memory>", exclude=True)

    @field_validator("final", mode="before")
    @classmethod
    def _final_one_or_many(cls, value: Any) -> Any:
        return _listed(value)

    @property
    def events(self) -> list[str]:
        """Event names: declared ones first (in order), then any others as first used."""
        used = [t.event for t in self.transitions]
        used += [e for state in self.states.values() for e in state.ignore]
        return list(dict.fromkeys([*self.events_declared, *used]))

    def event(self, name: str) -> EventSpec:
        return self.events_declared.get(name) or EventSpec()

    def tagged(self, tag: str) -> tuple[str, ...]:
        """The states carrying `tag`, in declaration order."""
        return tuple(name for name, state in self.states.items() if tag in state.tags)

    def ignored(self, state: str) -> frozenset[str]:
        return frozenset(self.states[state].ignore)

    def outgoing(self, state: str, event: str) -> list[TransitionSpec]:
        """The transitions `event` may take from `state`, guarded ones first."""
        return [t for t in self.transitions if t.event == event and state in t.sources]

    def edges(self) -> list[tuple[str, str, str]]:
        """(source, target, event) for every transition, sorted."""
        return sorted({(s, t.target_from(s), t.event) for t in self.transitions for s in t.sources})

    def allows(self, state: str, event: str) -> bool:
        """Whether `event` changes something in `state` (a transition, not an ignore)."""
        return any(state in t.sources for t in self.transitions if t.event == event)

    def commands(self) -> dict[str, str]:
        """Operator command -> the event it sends (e.g. load -> start)."""
        return {spec.command: name for name, spec in self.events_declared.items() if spec.command}


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
    problems += _check_names(spec)
    problems += _check_references(spec)
    problems += _check_transitions(spec)
    if problems:  # reachability is meaningless on a broken graph
        return problems
    return _check_graph(spec)


def _check_references(spec: Spec) -> list[str]:
    problems: list[str] = []
    states = spec.states
    if spec.initial not in states:
        problems.append(f"initial: unknown state {spec.initial!r}")
    for name in spec.final:
        if name not in states:
            problems.append(f"final: unknown state {name!r}")
    if spec.initial in spec.final:
        problems.append(f"initial state {spec.initial!r} cannot also be final")
    known_events = set(spec.events)
    for name, state in states.items():
        for tag in state.tags:
            if tag not in spec.tags:
                problems.append(f"state {name!r}: tag {tag!r} is not declared under tags")
        for event in state.ignore:
            if spec.allows(name, event):
                problems.append(
                    f"state {name!r}: event {event!r} is both ignored and has a transition"
                )
    if spec.events_declared:
        for event in sorted(known_events - spec.events_declared.keys()):
            problems.append(f"event {event!r} is used but not declared under events")
        used = {t.event for t in spec.transitions}
        for event in spec.events_declared:
            if event not in used:
                problems.append(f"event {event!r} is declared but no transition uses it")
    for command in _duplicates(spec.event(e).command for e in spec.events_declared):
        problems.append(f"command {command!r} is given to more than one event")
    return problems


def _check_transitions(spec: Spec) -> list[str]:
    problems: list[str] = []
    states = spec.states
    seen: dict[tuple[str, str], list[int]] = {}
    for index, transition in enumerate(spec.transitions):
        label = transition.label(index)
        targets = [transition.target] if transition.target is not None else []
        for state in (*transition.sources, *targets):
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
            seen.setdefault((state, transition.event), []).append(index)
        if len(set(transition.sources)) != len(transition.sources):
            problems.append(f"{label}: a source state is listed twice")
        for name in (*transition.actions, *([transition.cond] if transition.cond else [])):
            if not _NAME.match(name):
                problems.append(f"{label}: action or guard {name!r} must be an identifier")
        problems += _check_template(label, transition.reason)
    for (state, event), indexes in seen.items():
        guarded = [spec.transitions[i].cond is not None for i in indexes]
        if len(indexes) > 1 and not all(guarded[:-1]):
            listed = ", ".join(str(i) for i in indexes)
            problems.append(
                f"transitions {listed}: state {state!r} has event {event!r} more than once; "
                "all but the last need a cond (machines must be deterministic)"
            )
    return problems


def _check_template(label: str, template: str) -> list[str]:
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name]
    except ValueError as exc:
        return [f"{label}: reason template: {exc}"]
    return [
        f"{label}: reason field {{{f}}} must be an identifier" for f in fields if not _NAME.match(f)
    ]


def _check_graph(spec: Spec) -> list[str]:
    problems: list[str] = []
    reachable = _reachable(spec.initial, spec)
    for name in spec.states:
        if name not in reachable:
            problems.append(f"state {name!r} is unreachable from initial state {spec.initial!r}")
    leaving = {s for s, t, _ in spec.edges() if s != t}
    for name in spec.states:
        if name not in spec.final and name not in leaving:
            problems.append(f"state {name!r} is not final but has no outgoing transition")
    if spec.final:
        reverse = _reverse_reachable(set(spec.final), spec)
        for name in spec.states:
            if name in reachable and name not in reverse:
                problems.append(f"state {name!r} cannot reach a final state")
    return problems


def _check_names(spec: Spec) -> list[str]:
    problems = []
    if not _NAME.match(spec.name):
        problems.append(f"name {spec.name!r} must match {_NAME.pattern}")
    kinds = [("state", name) for name in spec.states] + [("event", e) for e in spec.events]
    kinds += [("tag", name) for name in spec.tags]
    for kind, name in kinds:
        if not _NAME.match(name) or keyword.iskeyword(name):
            problems.append(f"{kind} {name!r} must be a lower-case identifier ({_NAME.pattern})")
        elif kind != "tag" and name in _RESERVED:
            problems.append(f"{kind} {name!r} would shadow StateMachine.{name}")
    for tag in spec.tags:
        if tag in spec.states:
            problems.append(f"tag {tag!r} is named like a state")
    return problems


def _duplicates(names: Any) -> list[str]:
    seen: set[str] = set()
    twice: list[str] = []
    for name in names:
        if name and name in seen and name not in twice:
            twice.append(name)
        seen.add(name)
    return twice


def _reachable(start: str, spec: Spec) -> set[str]:
    edges = spec.edges()
    seen, todo = {start}, deque([start])
    while todo:
        state = todo.popleft()
        for source, target, _ in edges:
            if source == state and target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _reverse_reachable(goals: set[str], spec: Spec) -> set[str]:
    edges = spec.edges()
    seen, changed = set(goals), True
    while changed:
        changed = False
        for source, target, _ in edges:
            if target in seen and source not in seen:
                seen.add(source)
                changed = True
    return seen
