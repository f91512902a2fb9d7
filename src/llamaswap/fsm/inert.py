"""A model with no behaviour for a generated machine: every action a no-op, every guard
answering as told.

The spec binds actions and guards by name, and python-statemachine refuses to build an
instance whose model lacks one. Tools that drive a bare machine (the spec's property
test, the transition-cost benchmark, tables of what each event does) use this instead
of a real core, so a new action in the spec needs no edit there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .spec import Spec


def action_names(spec: Spec) -> set[str]:
    """Every action the spec names (transitions' `do`, states' `enter` and `exit`)."""
    names = {action for t in spec.transitions for action in t.actions}
    for state in spec.states.values():
        names |= set(state.enter) | set(state.exit)
    return names


def guard_names(spec: Spec) -> set[str]:
    return {t.cond for t in spec.transitions if t.cond}


class InertModel:
    """Actions do nothing; guards return `guards.get(name, False)`."""

    def __init__(self, spec: Spec, guards: Mapping[str, bool] | None = None) -> None:
        answers = dict(guards or {})
        for name in action_names(spec):
            setattr(self, name, _nothing)
        for name in guard_names(spec):
            setattr(self, name, _answer(answers.get(name, False)))


def _nothing(*_args: Any, **_kwargs: Any) -> None:
    return None


def _answer(value: bool) -> Any:
    return lambda: value
