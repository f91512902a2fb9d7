"""The sans-IO core of one upstream's lifecycle: messages in, effects out.

Rules (h11's, applied to `spec/process.fsm.yaml`):

1. Everything that decides what a process does next lives in the spec. This core only
   carries data (the generation of the current spawn, the grace period of the stop
   under way, why the last start failed) and turns spec actions into effects.
2. No I/O: no awaits, no clock, no sockets, no signals. Whoever drives the core (the
   process actor, the simulator, the property suite, `llamaswap check`) performs the
   effects and feeds back what happened as messages. All of them run this class and the
   machine generated from the spec, so a transition the fuzzer proves is the one the
   server takes.
3. Reports about a spawn (`Spawned`, `Healthy`, `Exited`, ...) carry its generation;
   stale ones are dropped here, in one place, before the machine sees them.
4. A message the spec `ignore`s in the current state changes nothing and produces no
   effect; one the spec neither allows nor ignores raises `TransitionNotAllowed` (the
   sender broke the protocol).
5. Every transition is announced (`Announce`) with its event and a reason, filled from
   the transition's `reason` template and the message's fields.
6. Every announcement says how many commands the core has handled so far (`handled`),
   and a command the state ignores is acknowledged (`Acknowledge`), so the sender can
   tell an answer to its latest command from one that was already on its way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from statemachine import StateMachine

from llamaswap.fsm import ProcessMachine, Spec
from llamaswap.fsm.names import ProcessEvent, ProcessState

# Grace period for killing a start that failed its health check.
ABORT_GRACE_SECONDS = 5.0


# --- messages: commands from the router -----------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    """Make the model ready (a request or an explicit load needs it)."""

    reason: str = ""
    event: ClassVar[ProcessEvent] = ProcessEvent.START


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop the process: SIGTERM (or cmdStop), SIGKILL after `grace` seconds."""

    grace: float
    reason: str = ""
    event: ClassVar[ProcessEvent] = ProcessEvent.STOP


@dataclass(frozen=True, slots=True)
class ShutDown:
    """Stop for good: no start is possible afterwards."""

    grace: float
    reason: str = ""
    event: ClassVar[ProcessEvent] = ProcessEvent.SHUT_DOWN


# --- messages: reports about one spawn (carry its generation) ----------------------------


@dataclass(frozen=True, slots=True)
class Spawned:
    generation: int
    pid: int
    event: ClassVar[ProcessEvent] = ProcessEvent.SPAWNED


@dataclass(frozen=True, slots=True)
class SpawnFailed:
    generation: int
    detail: str
    event: ClassVar[ProcessEvent] = ProcessEvent.SPAWN_FAILED


@dataclass(frozen=True, slots=True)
class Healthy:
    generation: int
    seconds: float  # since the spawn was decided
    event: ClassVar[ProcessEvent] = ProcessEvent.HEALTHY


@dataclass(frozen=True, slots=True)
class HealthTimedOut:
    generation: int
    seconds: float  # the healthCheckTimeout that ran out
    tail: tuple[str, ...] = ()  # the upstream's last lines of this attempt
    event: ClassVar[ProcessEvent] = ProcessEvent.HEALTH_TIMEOUT


@dataclass(frozen=True, slots=True)
class Exited:
    generation: int
    code: int
    tail: tuple[str, ...] = ()  # the upstream's last lines of this attempt
    event: ClassVar[ProcessEvent] = ProcessEvent.EXITED


@dataclass(frozen=True, slots=True)
class SlotsSaved:
    generation: int
    detail: str  # what was saved, or why the save was abandoned
    event: ClassVar[ProcessEvent] = ProcessEvent.SAVED


@dataclass(frozen=True, slots=True)
class SlotsRestored:
    generation: int
    detail: str  # what was restored, or why the restore was abandoned
    event: ClassVar[ProcessEvent] = ProcessEvent.RESTORED


Command = Start | Stop | ShutDown
Report = Spawned | SpawnFailed | Healthy | HealthTimedOut | Exited | SlotsSaved | SlotsRestored
Message = Command | Report


# --- effects -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Spawn:
    """Run the command; report `Spawned` (or `SpawnFailed`), later `Exited`."""

    generation: int


@dataclass(frozen=True, slots=True)
class PollHealth:
    """Poll the health endpoint; report `Healthy` or `HealthTimedOut`."""

    generation: int


@dataclass(frozen=True, slots=True)
class StopHealthCheck:
    """Stop polling (a report already under way is dropped as stale or ignored)."""

    generation: int


@dataclass(frozen=True, slots=True)
class SaveSlots:
    """Save the upstream's prompt caches (llama-server slots); report `SlotsSaved`."""

    generation: int


@dataclass(frozen=True, slots=True)
class RestoreSlots:
    """Restore the prompt caches saved at the last stop; report `SlotsRestored`."""

    generation: int


@dataclass(frozen=True, slots=True)
class Terminate:
    """Signal the process group of this spawn; SIGKILL after `grace` seconds."""

    generation: int
    grace: float


@dataclass(frozen=True, slots=True)
class Announce:
    """The process moved from `old` to `new` on `event`, for `reason`, having handled
    `handled` commands so far."""

    model: str
    old: ProcessState
    new: ProcessState
    event: ProcessEvent
    reason: str
    handled: int = 0


@dataclass(frozen=True, slots=True)
class Acknowledge:
    """A command changed nothing (the state ignores it); `handled` commands so far."""

    model: str
    state: ProcessState
    event: ProcessEvent
    handled: int


Effect = (
    Spawn
    | PollHealth
    | StopHealthCheck
    | SaveSlots
    | RestoreSlots
    | Terminate
    | Announce
    | Acknowledge
)


class ProcessCore:
    """One upstream's lifecycle decisions, driven by the machine generated from its spec.

    `handle(message)` returns the effects to perform, in order. The machine's actions
    (`spawn`, `poll_health`, `terminate`, ...) are the methods below, bound by the
    names the spec gives them.
    """

    _machine_state: str  # written by the machine itself (its state_field)

    def __init__(
        self,
        model: str,
        *,
        health_check: bool = True,
        persist_slots: bool = False,
        machine_class: type[StateMachine] = ProcessMachine,
    ) -> None:
        self.model = model
        self.health_check = health_check
        self.persist_slots = persist_slots  # save prompt caches before a stop, restore after
        self.generation = 0
        self.handled = 0  # commands handled (ignored ones too): echoed in announcements
        self.grace = 0.0  # of the stop under way (used when a launch gets its pid)
        self.fault = ""  # why the last start failed, kept while failed or aborting
        self.spec: Spec = machine_class.fsm_spec  # type: ignore[attr-defined]
        self._ignored = {state: self.spec.ignored(state) for state in self.spec.states}
        self._effects: list[Effect] = []
        self._message: Message | None = None
        # The machine is made on the first event the state does not ignore: a
        # python-statemachine instance holds ~140 KB of callback tables, and most of a
        # long model list never starts. Until then the state is the spec's initial one.
        self._machine_class = machine_class
        self._machine: StateMachine | None = None
        self._machine_state = self.spec.initial

    @property
    def state(self) -> ProcessState:
        return ProcessState(self._machine_state)

    def ignores(self, event: ProcessEvent) -> bool:
        return event in self._ignored[self._machine_state]

    def handle(self, message: Message) -> list[Effect]:
        """Apply one message; the effects to perform, in order."""
        if isinstance(message, Report):
            if message.generation != self.generation:
                return []  # about an earlier spawn
        else:
            self.handled += 1
        if self.ignores(message.event):
            if isinstance(message, Report):
                return []
            return [Acknowledge(self.model, self.state, message.event, self.handled)]
        if isinstance(message, Stop | ShutDown):
            self.grace = message.grace
        self._message = message
        machine = self._machine
        if machine is None:
            del self._machine_state  # the machine starts in the initial state itself
            machine = self._machine = self._machine_class(model=self, state_field="_machine_state")
        try:
            machine.send(message.event.value)
        finally:
            self._message = None
        effects, self._effects = self._effects, []
        return effects

    # -- guards and actions named in the spec ---------------------------------------------

    def health_check_disabled(self) -> bool:
        return not self.health_check

    def slots_persist(self) -> bool:
        return self.persist_slots

    def save_slots(self) -> None:
        self._effects.append(SaveSlots(self.generation))

    def restore_slots(self) -> None:
        self._effects.append(RestoreSlots(self.generation))

    def spawn(self) -> None:
        self.generation += 1
        self._effects.append(Spawn(self.generation))

    def poll_health(self) -> None:
        self._effects.append(PollHealth(self.generation))

    def stop_health_check(self) -> None:
        self._effects.append(StopHealthCheck(self.generation))

    def terminate(self) -> None:
        self._effects.append(Terminate(self.generation, self.grace))

    def terminate_abort(self) -> None:
        self.grace = ABORT_GRACE_SECONDS
        self.terminate()

    def after_transition(self, source: Any, target: Any, transition: Any) -> None:
        """Every change of state: keep a failure's reason, then announce it.

        A transition that stays in its state (a launch signalled once it has a pid)
        changes nothing anyone watches, so it is not announced.
        """
        old, new = ProcessState(source.value), ProcessState(target.value)
        if old is new:
            return
        message = self._message
        event = message.event if message is not None else ProcessEvent(transition.event)
        reason = self._reason(message, old, new, event)
        if new in (ProcessState.FAILED, ProcessState.ABORTING):
            self.fault = reason
        elif old is ProcessState.FAILED:
            self.fault = ""
        self._effects.append(Announce(self.model, old, new, event, reason, self.handled))

    def _reason(
        self, message: Message | None, old: ProcessState, new: ProcessState, event: ProcessEvent
    ) -> str:
        """The transition's `reason` template filled from the message, else the message's
        own reason; a failure gets the upstream's last lines of this attempt."""
        fields: dict[str, Any] = {"fault": self.fault}
        if message is not None:
            fields.update(asdict(message))
        templates = [t.reason for t in self.spec.outgoing(old, event) if t.target_from(old) == new]
        template = next((t for t in templates if t), "")
        text = template.format(**fields) if template else str(fields.get("reason", ""))
        tail = fields.get("tail")
        if tail and new in (ProcessState.FAILED, ProcessState.ABORTING):
            lines = "; last log lines:\n" + "\n".join(tail)
            if lines not in text:
                text += lines
        return text
