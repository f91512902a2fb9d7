"""The process lifecycle allows exactly what the process issue's table says."""

from __future__ import annotations

import pytest
from statemachine.exceptions import TransitionNotAllowed

from llamaswap.fsm import ProcessMachine

STATES = ["stopped", "starting", "ready", "stopping", "shutdown"]
ALLOWED = {
    ("stopped", "starting"),
    ("starting", "ready"),
    ("starting", "stopping"),
    ("starting", "stopped"),
    ("ready", "stopping"),
    ("ready", "stopped"),
    ("stopping", "stopped"),
    ("stopped", "shutdown"),
    ("starting", "shutdown"),
    ("ready", "shutdown"),
    ("stopping", "shutdown"),
}
FORBIDDEN = {
    ("stopped", "ready"),
    ("ready", "starting"),
    ("stopping", "ready"),
    *{("shutdown", target) for target in STATES},
}


def reachable_in_one_step(source: str) -> set[str]:
    targets = set()
    for event in ProcessMachine(start_value=source).allowed_events:
        machine = ProcessMachine(start_value=source)
        machine.send(event.id)
        targets.add(machine.current_state_value)
    return targets


@pytest.mark.parametrize(("source", "target"), sorted(ALLOWED))
def test_allowed_transition_exists(source: str, target: str) -> None:
    assert target in reachable_in_one_step(source)


@pytest.mark.parametrize(("source", "target"), sorted(FORBIDDEN))
def test_forbidden_transition_does_not_exist(source: str, target: str) -> None:
    assert target not in reachable_in_one_step(source)


def test_nothing_else_is_allowed() -> None:
    every = {(s, t) for s in STATES for t in reachable_in_one_step(s)}
    assert every == ALLOWED


@pytest.mark.parametrize("source", STATES)
def test_every_event_not_allowed_raises_and_keeps_state(source: str) -> None:
    machine = ProcessMachine(start_value=source)
    allowed = {event.id for event in machine.allowed_events}
    for event in ProcessMachine.fsm_spec.events:
        if event in allowed:
            continue
        with pytest.raises(TransitionNotAllowed):
            machine.send(event)
        assert machine.current_state_value == source


def test_starts_stopped_and_shutdown_is_final() -> None:
    machine = ProcessMachine()
    assert machine.current_state_value == "stopped"
    machine.send("shut_down")
    assert machine.current_state_value == "shutdown"
    assert machine.allowed_events == []


def test_listener_receives_callbacks_by_name() -> None:
    seen: list[tuple[str, str]] = []

    class Listener:
        def after_transition(self, source: object, target: object) -> None:
            seen.append((source.id, target.id))  # type: ignore[attr-defined]

        def on_enter_ready(self) -> None:
            seen.append(("entered", "ready"))

    machine = ProcessMachine(listeners=[Listener()])
    machine.send("start")
    machine.send("healthy")
    assert seen == [("stopped", "starting"), ("entered", "ready"), ("starting", "ready")]
