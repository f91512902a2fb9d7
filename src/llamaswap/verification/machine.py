"""The Hypothesis stateful exploration of a routing scenario.

Hypothesis plays every part the runtime would: clients arrive, leave (telling the
router at once or later), finish; swaps stop their evictees, then the target becomes
ready or fails; stops complete; processes crash; the clock advances (ttl, starvation);
operators unload and reload. After every step `World.check()` judges the state, and
in teardown everything is allowed to finish: then every request must be resolved
(liveness). `tests/property/` and `llamaswap check` both run this machine.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from llamaswap.scheduling import Request

from .scenario import Scenario
from .world import ClientRequest, InvariantViolation, World

UNKNOWN_MODEL = "no-such-model"
CLOCK_STEPS = (0.1, 1.0, 5.0, 30.0, 61.0)
TEARDOWN_ROUNDS = 500


@dataclass
class ExplorationStats:
    """What the exploration covered, across every example run."""

    examples: int = 0
    steps: int = 0
    co_running_sets: set[frozenset[str]] = field(default_factory=set)
    last_log: list[str] = field(default_factory=list)


def build_exploration(scenario: Scenario, stats: ExplorationStats | None = None) -> type:
    """A RuleBasedStateMachine class exploring `scenario` (records into `stats`)."""
    models = scenario.models
    record = stats if stats is not None else ExplorationStats()
    request_models = st.sampled_from([*models, UNKNOWN_MODEL])
    subsets = st.lists(st.sampled_from(models), unique=True, max_size=2) if models else st.just([])

    class RoutingExploration(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.world = World(scenario)
            self.scheduler = scenario.build_scheduler(self.world)
            self.world.scheduler = self.scheduler
            self.next_id = 0
            self.late_cancels: list[int] = []
            self.starting: set[str] = set()  # swap targets whose evictees are already gone
            self.reload_pending: list[str] | None = None  # models a reload under way replaces
            record.examples += 1
            record.last_log = self.world.log

        # -- clients ---------------------------------------------------------------------

        @rule(model=request_models)
        def request_arrives(self, model: str) -> None:
            self.next_id += 1
            rid, now = self.next_id, self.world.now
            self.world.requests[rid] = ClientRequest(rid, model, now)
            self.world.say(f"request #{rid} for {model} arrives")
            self.scheduler.submit(Request(rid, model, now), now)

        @rule(model=request_models)
        def request_that_may_not_load_arrives(self, model: str) -> None:
            """An upstream.ignorePaths request: answered at once, never loads anything."""
            self.next_id += 1
            rid, now, world = self.next_id, self.world.now, self.world
            world.requests[rid] = ClientRequest(rid, model, now)
            world.say(f"request #{rid} for {model} arrives (it may not load {model})")
            was_ready, swaps_before = world.processes.get(model) == "ready", dict(world.swaps)
            self.scheduler.submit(Request(rid, model, now, may_load=False), now)
            status = world.requests[rid].status
            if status == "waiting" or world.swaps != swaps_before:
                what = "waits" if status == "waiting" else "started a swap"
                raise world._violation(
                    "no load", f"request #{rid} {what}", models=frozenset({model})
                )
            if status == "granted" and not was_ready:
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
            self.world.finished(rid)
            self.world.say(f"request #{rid} finishes")
            self.scheduler.finish(rid, self.world.now)

        # -- processes and swaps ---------------------------------------------------------------

        @precondition(lambda self: bool(set(self.world.swaps) - self.starting))
        @rule(data=st.data())
        def evictees_stop(self, data: st.DataObject) -> None:
            target = data.draw(st.sampled_from(sorted(set(self.world.swaps) - self.starting)))
            self._evictees_stop(target)

        def _evictees_stop(self, target: str) -> None:
            evicted = [m for m in self.world.swaps[target] if m != target]
            stopped = f"{', '.join(evicted)} stopped; " if evicted else ""
            self.world.say(f"{stopped}{target} starts loading")
            for model in (*self.world.swaps[target], target):
                if model in self.world.stopping or (
                    model != target and self.world.processes[model] != "stopped"
                ):
                    self._process_stopped(model)
            self.starting.add(target)
            self.world.processes[target] = "starting"
            self.scheduler.process_state(target, "starting", self.world.now)

        @precondition(lambda self: bool(self.starting))
        @rule(data=st.data(), healthy=st.sampled_from([True, True, True, False]))
        def swap_target_settles(self, data: st.DataObject, healthy: bool) -> None:
            self._settle(data.draw(st.sampled_from(sorted(self.starting))), healthy)

        def _settle(self, target: str, healthy: bool) -> None:
            self.starting.discard(target)
            self.world.swaps.pop(target, None)
            now = self.world.now
            self.world.processes[target] = "ready" if healthy else "stopped"
            self.world.say(f"{target} {'is ready' if healthy else 'fails to start'}")
            self.scheduler.process_state(target, self.world.processes[target], now)
            self.scheduler.swap_done(target, None if healthy else "start failed", now)

        def _process_stopped(self, model: str) -> None:
            self.world.stopping.discard(model)
            self.world.processes[model] = "stopped"
            self.scheduler.process_state(model, "stopped", self.world.now)

        @precondition(lambda self: bool(self.world.stopping - self.world.swaps.keys()))
        @rule(data=st.data())
        def stop_completes(self, data: st.DataObject) -> None:
            choices = sorted(self.world.stopping - self.world.swaps.keys())
            model = data.draw(st.sampled_from(choices), label="stopped")
            self.world.say(f"{model} has stopped")
            self._process_stopped(model)

        def _crashable(self) -> list[str]:
            return sorted(
                m
                for m, state in self.world.processes.items()
                if state == "ready" and m not in self.world.stopping and m not in self.world.swaps
            )

        @precondition(lambda self: bool(self._crashable()))
        @rule(data=st.data())
        def process_crashes(self, data: st.DataObject) -> None:
            model = data.draw(st.sampled_from(self._crashable()), label="crashing")
            self.world.say(f"{model} crashes")
            self._process_stopped(model)

        # -- time and operators -------------------------------------------------------------------

        @rule(seconds=st.sampled_from(CLOCK_STEPS))
        def clock_advances(self, seconds: float) -> None:
            self.world.say(f"{seconds:g}s pass")
            self.world.now += seconds
            self.scheduler.tick(self.world.now)

        @rule(chosen=subsets)
        def operator_unloads(self, chosen: list[str]) -> None:
            targets = chosen or models
            self.world.say(f"operator unloads {', '.join(targets) or 'nothing'}")
            for model in self.scheduler.unload(targets, self.world.now):
                self.starting.discard(model)
                if self.world.processes[model] != "stopped":
                    self.world.stopping.add(model)

        @rule(changed=subsets)
        def config_reloads(self, changed: list[str]) -> None:
            self.world.say(f"config reloads; changed: {', '.join(changed) or 'nothing'}")
            stop = self.scheduler.reconfigure(
                scenario.rules, scenario.policy, changed, self.world.now
            )
            for model in stop:
                self.starting.discard(model)
                if self.world.processes[model] != "stopped":
                    self.world.stopping.add(model)

        @precondition(lambda self: self.reload_pending is None)
        @rule(changed=subsets)
        def reload_begins(self, changed: list[str]) -> None:
            """The router's two-phase reload: changed models stop, their waiters wait."""
            self.world.say(f"a config reload begins; changed: {', '.join(changed) or '-'}")
            self.scheduler.retire(changed, self.world.now)
            for model in changed:
                self.starting.discard(model)
                if self.world.processes[model] != "stopped":
                    self.world.stopping.add(model)
            self.reload_pending = changed

        @precondition(
            lambda self: (
                self.reload_pending is not None
                and all(self.world.processes[m] == "stopped" for m in self.reload_pending)
            )
        )
        @rule()
        def reload_completes(self) -> None:
            self.world.say("the config reload completes")
            self.reload_pending = None
            self.scheduler.reconfigure(scenario.rules, scenario.policy, (), self.world.now)

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

        def _make_progress(self) -> bool:
            if self.late_cancels:
                self._deliver_cancel(self.late_cancels.pop(0))
                return True
            pending = sorted(set(self.world.swaps) - self.starting)
            if pending:
                self._evictees_stop(pending[0])
                return True
            if self.starting:
                self._settle(sorted(self.starting)[0], True)
                return True
            idle_stops = sorted(self.world.stopping - self.world.swaps.keys())
            if idle_stops:
                self._process_stopped(idle_stops[0])
                return True
            if self.reload_pending is not None and all(
                self.world.processes[m] == "stopped" for m in self.reload_pending
            ):
                self.reload_completes()
                return True
            granted = self._granted()
            if granted:
                self.world.finished(granted[0])
                self.scheduler.finish(granted[0], self.world.now)
                return True
            return False

    RoutingExploration.__name__ = "RoutingExploration"
    return RoutingExploration
