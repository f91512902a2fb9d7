"""Turn a validated `Spec` into a strict python-statemachine class.

The generated class has no methods of its own. The spec's actions (`do`, `enter`,
`exit`) and guards (`cond`) are names that python-statemachine resolves per instance on
the machine's model or listeners, so the runtime never subclasses generated code and a
model that lacks a named action fails when the machine is created, not mid-transition.
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
    (The spec's `ignore` lists are applied by the caller, which knows the events that
    must change nothing; see `llamaswap.lifecycle`.) Instances accept `start_value=` to
    begin in any state, plus `model=` and `listeners=`.
    """
    states: dict[str, State] = {
        name: State(
            name=name,
            value=name,
            initial=(name == spec.initial),
            final=(name in spec.final),
            enter=list(state.enter) or None,
            exit=list(state.exit) or None,
        )
        for name, state in spec.states.items()
    }
    for transition in spec.transitions:
        options: dict[str, Any] = {"event": transition.event}
        if transition.actions:
            options["on"] = list(transition.actions)
        if transition.cond:
            options["cond"] = transition.cond
        for source in transition.sources:
            if transition.internal:
                states[source].to.itself(internal=True, **options)  # type: ignore[no-untyped-call]
            else:
                states[source].to(states[transition.target_from(source)], **options)
    attrs: dict[str, Any] = {
        **states,
        "__module__": __name__,
        "__doc__": spec.description or f"Generated from {spec.source}.",
        "fsm_spec": spec,
    }
    return cast(
        "type[StateMachine]", StateMachineMetaclass(class_name(spec), (StateMachine,), attrs)
    )
