"""The Hypothesis stateful exploration of a routing scenario.

Hypothesis plays every part the runtime would: clients arrive, leave (telling the
router at once or later), finish; the router's commands reach the process cores; the
operating system answers the cores' effects (a spawn works or fails, the health check
passes or times out, a process exits after a stop or crashes); the cores'
announcements reach the router; the clock advances (ttl, starvation); operators unload
and reload. The processes are the real `ProcessCore`s the server runs, so every
transition explored is one the spec allows, and an impossible one fails the test.

The upstream's reports come from `OS_REPORTS`, which says when the operating system
can produce each one; building the exploration fails while the spec has an event sent
`by: upstream` that it cannot produce, so a new report cannot go unexplored.

After every step `World.check()` judges the state; in teardown everything is allowed to
finish: then every request must be resolved (liveness). `tests/property/` and
`llamaswap check` both run this machine.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from llamaswap.fsm import shipped_spec
from llamaswap.fsm.names import PROCESS_SERVING, ProcessEvent, RouterState
from llamaswap.lifecycle.process import (
    Exited,
    HealthTimedOut,
    Healthy,
    Message,
    SlotsRestored,
    SlotsSaved,
    Spawned,
    SpawnFailed,
)
from llamaswap.scheduling import Request

from .scenario import Scenario
from .world import ClientRequest, InvariantViolation, SimProcess, World

UNKNOWN_MODEL = "no-such-model"
CLOCK_STEPS = (0.1, 1.0, 5.0, 30.0, 61.0)
TEARDOWN_ROUNDS = 2000
CRASH_CODE = 1


@dataclass
class ExplorationStats:
    """What the exploration covered, across every example run."""

    examples: int = 0
    steps: int = 0
    co_running_sets: set[frozenset[str]] = field(default_factory=set)
    last_log: list[str] = field(default_factory=list)


# -- the operating system's answers, one per upstream event of the spec ----------------------
# Each: (can it happen to this process now?, the report it produces, and its effect on
# the simulated OS). `ok` is Hypothesis's choice where the outcome can go either way.

Report = Callable[[SimProcess, bool], Message]


def _spawn_report(process: SimProcess, ok: bool) -> Message:
    generation = process.spawning
    assert generation is not None
    process.spawning = None
    if ok:
        process.alive, process.terminating = generation, False
        return Spawned(generation, 10_000 + generation)
    return SpawnFailed(generation, "No such file or directory")


def _health_report(process: SimProcess, ok: bool) -> Message:
    generation = process.polling
    assert generation is not None
    process.polling = None
    return Healthy(generation, 1.0) if ok else HealthTimedOut(generation, 10.0)


def _save_report(process: SimProcess, ok: bool) -> Message:
    generation = process.saving
    assert generation is not None
    process.saving = None
    return SlotsSaved(generation, "saved" if ok else "abandoned after 30s")


def _restore_report(process: SimProcess, ok: bool) -> Message:
    generation = process.restoring
    assert generation is not None
    process.restoring = None
    return SlotsRestored(generation, "restored" if ok else "abandoned after 30s")


def _exit_report(process: SimProcess, ok: bool) -> Message:
    generation = process.alive
    assert generation is not None
    code = 0 if process.terminating else CRASH_CODE
    process.alive, process.terminating, process.polling = None, False, None
    return Exited(generation, code)


OS_REPORTS: dict[ProcessEvent, tuple[Callable[[SimProcess], bool], Report]] = {
    ProcessEvent.SPAWNED: (lambda p: p.spawning is not None, _spawn_report),
    ProcessEvent.HEALTHY: (lambda p: p.polling is not None, _health_report),
    ProcessEvent.EXITED: (lambda p: p.alive is not None, _exit_report),
    ProcessEvent.SAVED: (lambda p: p.saving is not None, _save_report),
    ProcessEvent.RESTORED: (lambda p: p.restoring is not None, _restore_report),
}
# Outcomes that are the "bad" branch of a report above.
OS_ALIASES = {ProcessEvent.SPAWN_FAILED: ProcessEvent.SPAWNED}
OS_ALIASES[ProcessEvent.HEALTH_TIMEOUT] = ProcessEvent.HEALTHY


def upstream_events() -> list[ProcessEvent]:
    """The spec's events sent by the upstream, each with the OS answer that produces it."""
    spec = shipped_spec("process")
    events = [ProcessEvent(e) for e in spec.events if spec.event(e).by == "upstream"]
    unknown = [e for e in events if e not in OS_REPORTS and e not in OS_ALIASES]
    if unknown:
        raise RuntimeError(f"the exploration cannot yet produce upstream events {unknown}")
    return events


def build_exploration(scenario: Scenario, stats: ExplorationStats | None = None) -> type:
    """A RuleBasedStateMachine class exploring `scenario` (records into `stats`)."""
    models = scenario.models
    record = stats if stats is not None else ExplorationStats()
    request_models = st.sampled_from([*models, UNKNOWN_MODEL])
    subsets = st.lists(st.sampled_from(models), unique=True, max_size=2) if models else st.just([])
    outcomes = st.sampled_from([True, True, True, False])
    keep_alives = st.sampled_from([None, None, None, 0.0, 5.0, -1.0])
    keys = st.sampled_from(["", "k1", "k2"])

    class RoutingExploration(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.world = World(scenario)
            self.scheduler = scenario.build_scheduler(self.world)
            self.world.scheduler = self.scheduler
            self.next_id = 0
            self.late_cancels: list[int] = []
            record.examples += 1
            record.last_log = self.world.log

        # -- clients ---------------------------------------------------------------------

        @rule(model=request_models, keep_alive=keep_alives, key=keys)
        def request_arrives(self, model: str, keep_alive: float | None, key: str) -> None:
            self.next_id += 1
            rid, now = self.next_id, self.world.now
            client = ClientRequest(rid, model, now, keep_alive=keep_alive, key=key)
            self.world.requests[rid] = client
            asks = "" if keep_alive is None else f" (keep_alive {keep_alive:g})"
            sender = f" with key {key}" if key else ""
            self.world.say(f"request #{rid} for {model}{sender} arrives{asks}")
            request = Request(rid, model, now, keep_alive=keep_alive, key=key)
            self.scheduler.submit(request, now)

        @rule(model=request_models)
        def request_that_may_not_load_arrives(self, model: str) -> None:
            """An upstream.ignorePaths request: answered at once, never loads anything."""
            self.next_id += 1
            rid, now, world = self.next_id, self.world.now, self.world
            world.requests[rid] = ClientRequest(rid, model, now)
            world.say(f"request #{rid} for {model} arrives (it may not load {model})")
            heard_serving = world.delivered.get(model) in PROCESS_SERVING
            swaps_before = dict(world.swaps)
            commands_before = {m: len(p.inbox) for m, p in world.processes.items()}
            self.scheduler.submit(Request(rid, model, now, may_load=False), now)
            status = world.requests[rid].status
            started = any(
                len(p.inbox) > commands_before.get(m, 0) for m, p in world.processes.items()
            )
            if status == "waiting" or world.swaps != swaps_before or started:
                what = "waits" if status == "waiting" else "started a swap or a process"
                if self.scheduler.state is RouterState.RELOADING and status == "waiting":
                    return  # held until the reload is done, like every request
                raise world._violation(
                    "no load", f"request #{rid} {what}", models=frozenset({model})
                )
            if status == "granted" and not heard_serving:
                raise world._violation(
                    "no load", f"request #{rid} was served by {model} while not ready"
                )

        def _waiting(self) -> list[int]:
            return sorted(
                r.id for r in self.world.requests.values() if r.status == "waiting" and not r.gone
            )

        @precondition(lambda self: bool(self._waiting()))
        @rule(data=st.data(), tell_router_now=st.booleans())
        def client_leaves(self, data: st.DataObject, tell_router_now: bool) -> None:
            rid = data.draw(st.sampled_from(self._waiting()), label="leaving")
            client = self.world.requests[rid]
            client.gone = True
            self.world.say(f"client of request #{rid} leaves")
            if tell_router_now:
                self._deliver_cancel(rid)
            else:
                self.late_cancels.append(rid)

        @precondition(lambda self: bool(self.late_cancels))
        @rule()
        def late_cancel_arrives(self) -> None:
            rid = self.late_cancels[0]
            self.world.say(f"the cancel of request #{rid} reaches the router")
            self._deliver_cancel(self.late_cancels.pop(0))

        def _deliver_cancel(self, rid: int) -> None:
            client = self.world.requests[rid]
            if client.status == "waiting":
                client.status = "cancelled"
            self.scheduler.cancel(rid, self.world.now)

        def _granted(self) -> list[int]:
            return sorted(r.id for r in self.world.requests.values() if r.status == "granted")

        @precondition(lambda self: bool(self._granted()))
        @rule(data=st.data())
        def request_finishes(self, data: st.DataObject) -> None:
            rid = data.draw(st.sampled_from(self._granted()), label="finishing")
            self._finish(rid)

        def _finish(self, rid: int) -> None:
            self.world.finished(rid)
            self.world.say(f"request #{rid} finishes")
            self.scheduler.finish(rid, self.world.now)

        # -- the runtime ------------------------------------------------------------------------

        def _with_commands(self) -> list[str]:
            return sorted(m for m, p in self.world.processes.items() if p.inbox)

        def _os_can(self, event: ProcessEvent) -> list[str]:
            possible, _ = OS_REPORTS[event]
            return sorted(m for m, p in self.world.processes.items() if possible(p))

        def _os_answers(self, event: ProcessEvent, model: str, ok: bool) -> None:
            process = self.world.processes[model]
            _, report = OS_REPORTS[event]
            self.world.feed(process, report(process, ok))

        def _runtime_moves(self) -> list[str]:
            """What the runtime could do next: deliver a command or an announcement, or
            have the operating system answer a spawn, a health poll or an exit."""
            moves = ["command"] if self._with_commands() else []
            moves += ["announcement"] if self.world.announcements else []
            moves += [str(e) for e in OS_REPORTS if self._os_can(e)]
            return moves

        def _deliver_command(self, model: str) -> None:
            process = self.world.processes[model]
            self.world.feed(process, process.inbox.popleft())

        @precondition(lambda self: bool(self._runtime_moves()))
        @rule(data=st.data(), ok=outcomes)
        def runtime_moves(self, data: st.DataObject, ok: bool) -> None:
            """One thing happens in the runtime; which one, and to whom, Hypothesis picks.

            (One rule for all of them, so client and operator actions keep their share.)
            """
            move = data.draw(st.sampled_from(self._runtime_moves()), label="move")
            if move == "announcement":
                self.world.deliver_announcement()
            elif move == "command":
                model = data.draw(st.sampled_from(self._with_commands()), label="process")
                self._deliver_command(model)
            else:
                event = ProcessEvent(move)
                model = data.draw(st.sampled_from(self._os_can(event)), label="process")
                self._os_answers(event, model, ok)

        @rule()
        def runtime_catches_up(self) -> None:
            """Every command, report and announcement under way completes, all well."""
            for _ in range(TEARDOWN_ROUNDS):
                if not self._runtime_progress():
                    return

        def _runtime_progress(self) -> bool:
            """One step of the runtime towards quiet (no client acts)."""
            world = self.world
            if world.announcements:
                world.deliver_announcement()
                return True
            commands = self._with_commands()
            if commands:
                self._deliver_command(commands[0])
                return True
            for event in (
                ProcessEvent.SPAWNED,
                ProcessEvent.HEALTHY,
                ProcessEvent.SAVED,
                ProcessEvent.RESTORED,
            ):
                ready = self._os_can(event)
                if ready:
                    self._os_answers(event, ready[0], True)
                    return True
            exiting = self._os_can(ProcessEvent.EXITED)
            stopping = [m for m in exiting if world.processes[m].terminating]
            if stopping:
                self._os_answers(ProcessEvent.EXITED, stopping[0], True)
                return True
            return False

        # -- time and operators -------------------------------------------------------------------

        @rule(seconds=st.sampled_from(CLOCK_STEPS))
        def clock_advances(self, seconds: float) -> None:
            self.world.say(f"{seconds:g}s pass")
            self.world.now += seconds
            self.scheduler.tick(self.world.now)
            self.world.check_expired()

        @rule(chosen=subsets)
        def operator_unloads(self, chosen: list[str]) -> None:
            targets = chosen or models
            self.world.say(f"operator unloads {', '.join(targets) or 'nothing'}")
            self.scheduler.unload(targets, self.world.now)

        @precondition(lambda self: self.scheduler.state is RouterState.ACCEPTING)
        @rule(changed=subsets)
        def config_reloads(self, changed: list[str]) -> None:
            """The router's reload: changed models get new processes; waiters wait."""
            self.world.say(f"a config reload begins; changed: {', '.join(changed) or '-'}")
            self.scheduler.reload(scenario.rules, scenario.policy, changed, self.world.now)

        # -- judgement ---------------------------------------------------------------------

        @invariant()
        def invariants_hold(self) -> None:
            record.steps += 1
            self.world.check()
            record.co_running_sets |= self.world.co_running_sets

        def teardown(self) -> None:
            """Liveness: once processes cooperate and clients finish, nobody is left waiting."""
            if self.world.violated or sys.exc_info()[1] is not None:
                return  # a step already failed: report that, not its consequences
            for _ in range(TEARDOWN_ROUNDS):
                if not self._make_progress():
                    break
                self.world.check()
            stuck = [r for r in self.world.requests.values() if r.status == "waiting"]
            if stuck or self.scheduler.queued() or self.scheduler.active_swaps():
                described = ", ".join(f"#{r.id} for {r.model}" for r in stuck)
                raise InvariantViolation(
                    "liveness",
                    f"after every process and client cooperated, still waiting: {described}",
                    models=frozenset(r.model for r in stuck),
                )
            if self.scheduler.state is not RouterState.ACCEPTING:
                raise InvariantViolation(
                    "liveness", f"the router never got back from {self.scheduler.state}"
                )

        def _make_progress(self) -> bool:
            if self.late_cancels:
                self._deliver_cancel(self.late_cancels.pop(0))
                return True
            if self._runtime_progress():
                return True
            granted = self._granted()
            if granted:
                self._finish(granted[0])
                return True
            return False

    upstream_events()  # fails early when the spec has a report the world cannot produce
    RoutingExploration.__name__ = "RoutingExploration"
    return RoutingExploration
