"""Turn a validated `Spec` into a strict python-statemachine class.

The generated class has no methods of its own. Behaviour is attached by name through
a model or listener object (`on_enter_ready`, `after_stop`, `after_transition`, ...),
which python-statemachine resolves per instance, so the runtime never subclasses
generated code.
"""

from __future__ import annotations

from typing import Any, cast

from statemachine import State, StateMachine
from statemachine.factory import StateMachineMetaclass

from .spec import Spec


def class_name(spec: Spec) -> str:
    """`process` -> `ProcessMachine`, `my_thing` -> `MyThingMachine`."""
    return "".join(part.capitalize() for part in spec.name.split("_")) + "Machine"


def build_machine(spec: Spec) -> type[StateMachine]:
    """Build the machine class for `spec`.

    Strict `StateMachine` semantics: an event that is not allowed in the current state
    raises `statemachine.exceptions.TransitionNotAllowed` and leaves the state as it was.
    Instances accept `start_value=` to begin in any state, plus `model=` and `listeners=`.
    """
    states: dict[str, State] = {
        name: State(
            name=name,
            value=name,
            initial=(name == spec.initial),
            final=(name in spec.final),
        )
        for name in spec.states
    }
    for transition in spec.transitions:
        for source in transition.sources:
            states[source].to(states[transition.target], event=transition.event)
    attrs: dict[str, Any] = {
        **states,
        "__module__": __name__,
        "__doc__": spec.description or f"Generated from {spec.source}.",
        "fsm_spec": spec,
    }
    return cast(
        "type[StateMachine]", StateMachineMetaclass(class_name(spec), (StateMachine,), attrs)
    )
