"""The process lifecycle does exactly what its design says, state by state and event by event.

The table below is written out by hand from the design (docs/lifecycle-specs.md), not read
from the spec, so an accidental edit of `spec/process.fsm.yaml` fails here. Every
(state, event) pair is a transition, an ignore, or rejected.
"""

from __future__ import annotations

import pytest
from statemachine.exceptions import TransitionNotAllowed

from llamaswap.fsm import ProcessMachine
from llamaswap.fsm.inert import InertModel
from llamaswap.fsm.names import ProcessEvent, ProcessState
from llamaswap.lifecycle.process import Acknowledge, Healthy, ProcessCore, Start, Stop

S, E = ProcessState, ProcessEvent
TABLE: dict[tuple[ProcessState, ProcessEvent], ProcessState] = {
    (S.STOPPED, E.START): S.LAUNCHING,
    (S.FAILED, E.START): S.LAUNCHING,
    (S.LAUNCHING, E.SPAWNED): S.STARTING,  # READY when the health check is disabled
    (S.LAUNCHING, E.SPAWN_FAILED): S.FAILED,
    (S.STARTING, E.HEALTHY): S.READY,  # RESTORING when prompt caches persist
    (S.RESTORING, E.RESTORED): S.READY,
    (S.RESTORING, E.EXITED): S.FAILED,
    (S.RESTORING, E.STOP): S.STOPPING,
    (S.RESTORING, E.SHUT_DOWN): S.SHUTTING_DOWN,
    (S.SAVING, E.SAVED): S.STOPPING,
    (S.SAVING, E.EXITED): S.STOPPED,
    (S.SAVING, E.START): S.RESTARTING,
    (S.SAVING, E.SHUT_DOWN): S.SHUTTING_DOWN,
    (S.STOPPING, E.SAVED): S.STOPPING,
    (S.RESTARTING, E.SAVED): S.RESTARTING,
    (S.SHUTTING_DOWN, E.SAVED): S.SHUTTING_DOWN,
    (S.STARTING, E.HEALTH_TIMEOUT): S.ABORTING,
    (S.STARTING, E.EXITED): S.FAILED,
    (S.ABORTING, E.EXITED): S.FAILED,
    (S.READY, E.EXITED): S.FAILED,
    (S.STARTING, E.STOP): S.STOPPING,
    (S.READY, E.STOP): S.STOPPING,  # SAVING when prompt caches persist
    (S.LAUNCHING, E.STOP): S.STOPPING,
    (S.RESTARTING, E.STOP): S.STOPPING,
    (S.ABORTING, E.STOP): S.STOPPING,
    (S.FAILED, E.STOP): S.STOPPED,
    (S.STOPPING, E.SPAWNED): S.STOPPING,
    (S.RESTARTING, E.SPAWNED): S.RESTARTING,
    (S.SHUTTING_DOWN, E.SPAWNED): S.SHUTTING_DOWN,
    (S.STOPPING, E.SPAWN_FAILED): S.STOPPED,
    (S.STOPPING, E.EXITED): S.STOPPED,
    (S.STOPPING, E.START): S.RESTARTING,
    (S.RESTARTING, E.EXITED): S.LAUNCHING,
    (S.RESTARTING, E.SPAWN_FAILED): S.LAUNCHING,
    (S.STOPPED, E.SHUT_DOWN): S.SHUTDOWN,
    (S.FAILED, E.SHUT_DOWN): S.SHUTDOWN,
    (S.STARTING, E.SHUT_DOWN): S.SHUTTING_DOWN,
    (S.READY, E.SHUT_DOWN): S.SHUTTING_DOWN,
    (S.LAUNCHING, E.SHUT_DOWN): S.SHUTTING_DOWN,
    (S.STOPPING, E.SHUT_DOWN): S.SHUTTING_DOWN,
    (S.RESTARTING, E.SHUT_DOWN): S.SHUTTING_DOWN,
    (S.ABORTING, E.SHUT_DOWN): S.SHUTTING_DOWN,
    (S.SHUTTING_DOWN, E.EXITED): S.SHUTDOWN,
    (S.SHUTTING_DOWN, E.SPAWN_FAILED): S.SHUTDOWN,
}
IGNORED = {
    S.STOPPED: {E.STOP, E.SAVED, E.RESTORED},
    S.LAUNCHING: {E.START},
    S.STARTING: {E.START},
    S.RESTORING: {E.START, E.HEALTHY, E.HEALTH_TIMEOUT},
    S.READY: {E.START},
    S.SAVING: {E.STOP, E.HEALTHY, E.HEALTH_TIMEOUT},
    S.STOPPING: {E.STOP, E.HEALTHY, E.HEALTH_TIMEOUT, E.RESTORED},
    S.RESTARTING: {E.START, E.HEALTHY, E.HEALTH_TIMEOUT, E.RESTORED},
    S.ABORTING: {E.START, E.HEALTHY, E.HEALTH_TIMEOUT},
    S.FAILED: {E.SAVED, E.RESTORED},
    S.SHUTTING_DOWN: {
        E.START,
        E.STOP,
        E.SHUT_DOWN,
        E.HEALTHY,
        E.HEALTH_TIMEOUT,
        E.RESTORED,
    },
    S.SHUTDOWN: {E.START, E.STOP, E.SHUT_DOWN, E.SAVED, E.RESTORED},
}


def model(health_check: bool = True, persist_slots: bool = False) -> InertModel:
    guards = {"health_check_disabled": not health_check, "slots_persist": persist_slots}
    return InertModel(ProcessMachine.fsm_spec, guards)  # type: ignore[attr-defined]


def send(
    source: ProcessState,
    event: ProcessEvent,
    health_check: bool = True,
    persist_slots: bool = False,
) -> ProcessState:
    machine = ProcessMachine(start_value=source.value, model=model(health_check, persist_slots))
    machine.send(event.value)
    return ProcessState(machine.current_state_value)


@pytest.mark.parametrize("state", list(ProcessState))
@pytest.mark.parametrize("event", list(ProcessEvent))
def test_every_state_and_event_does_what_the_table_says(
    state: ProcessState, event: ProcessEvent
) -> None:
    if (state, event) in TABLE:
        assert send(state, event) == TABLE[state, event]
    else:
        with pytest.raises(TransitionNotAllowed):
            send(state, event)
    assert (event in ProcessMachine.fsm_spec.ignored(state)) == (event in IGNORED[state])
    assert not ((state, event) in TABLE and event in IGNORED[state])


def test_without_a_health_check_a_spawned_process_is_ready() -> None:
    assert send(S.LAUNCHING, E.SPAWNED, health_check=False) == S.READY


def test_persisted_prompt_caches_are_restored_before_serving_and_saved_before_a_stop() -> None:
    assert send(S.STARTING, E.HEALTHY, persist_slots=True) == S.RESTORING
    assert send(S.READY, E.STOP, persist_slots=True) == S.SAVING
    assert send(S.READY, E.SHUT_DOWN, persist_slots=True) == S.SHUTTING_DOWN
    assert send(S.READY, E.EXITED, persist_slots=True) == S.FAILED, "a crash saves nothing"


def test_starts_stopped_and_shutdown_is_final() -> None:
    assert ProcessCore("m").state is S.STOPPED
    machine = ProcessMachine(start_value="shutdown", model=model())
    assert machine.allowed_events == []


def test_the_machine_is_made_on_the_first_event_that_moves_it() -> None:
    """A configured model that never starts holds no machine (~140 KB each); the first
    start makes one, starting from the spec's initial state, with the same effects."""
    core = ProcessCore("m")
    core.handle(Stop(1.0))  # ignored while stopped
    assert core._machine is None and core.state is S.STOPPED
    effects = core.handle(Start())
    assert core._machine is not None and core.state is S.LAUNCHING
    assert [type(effect).__name__ for effect in effects] == ["Spawn", "Announce"]


def test_an_ignored_command_changes_nothing_and_is_acknowledged() -> None:
    core = ProcessCore("m")
    assert core.handle(Stop(1.0)) == [Acknowledge("m", S.STOPPED, E.STOP, handled=1)]
    assert core.state is S.STOPPED
    core.handle(Start())
    assert core.handle(Start()) == [Acknowledge("m", S.LAUNCHING, E.START, handled=3)]
    assert core.state is S.LAUNCHING
    assert core.handle(Healthy(core.generation + 7, 1.0)) == [], "a stale report: dropped"


def test_a_listener_receives_callbacks_by_name() -> None:
    seen: list[tuple[str, str]] = []

    class Listener:
        def after_transition(self, source: object, target: object) -> None:
            seen.append((source.id, target.id))  # type: ignore[attr-defined]

        def on_enter_ready(self) -> None:
            seen.append(("entered", "ready"))

    machine = ProcessMachine(start_value="starting", model=model(), listeners=[Listener()])
    machine.send("healthy")
    assert seen == [("entered", "ready"), ("starting", "ready")]
