"""A fake runtime around the pure scheduler: processes, swaps, clients and a clock.

`World` implements the scheduler's `Effects`. Effects only record what the runtime
would do (a swap started, a stop issued); the exploration's rules later decide when
and how each finishes. Every effect is judged on the spot against the scenario's
ground truth, and `check()` judges the whole state after each step.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from llamaswap.scheduling import Request, RoutingError, Scheduler, Usage, rules_allowing

from .scenario import Scenario


class InvariantViolation(AssertionError):
    """The scheduler broke a promise; `kind` names which one."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        models: frozenset[str] = frozenset(),
        rule: str = "",
    ) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.models = models
        self.rule = rule


@dataclass
class ClientRequest:
    id: int
    model: str
    arrival: float
    status: str = "waiting"  # waiting | granted | finished | rejected | cancelled
    gone: bool = False  # the client left; its cancel may not have reached the router yet
    joined_step: int | None = None  # the step in which it was first seen waiting on a swap
    error: str = ""


@dataclass
class World:
    """Everything outside the scheduler, as plain data."""

    scenario: Scenario
    now: float = 0.0
    processes: dict[str, str] = field(default_factory=dict)  # model -> state
    swaps: dict[str, tuple[str, ...]] = field(default_factory=dict)  # target -> evict
    stopping: set[str] = field(default_factory=set)  # stops issued, not yet complete
    requests: dict[int, ClientRequest] = field(default_factory=dict)
    queue_positions: dict[int, int] = field(default_factory=dict)
    co_running_sets: set[frozenset[str]] = field(default_factory=set)
    last_used: dict[str, float] = field(default_factory=dict)
    step: int = 0  # rules run so far
    violated: bool = False  # an invariant already failed: later judgements are moot
    starving_since: dict[int, int] = field(default_factory=dict)  # request id -> step
    log: list[str] = field(default_factory=list)
    scheduler: Scheduler | None = None

    def __post_init__(self) -> None:
        self.processes = dict.fromkeys(self.scenario.models, "stopped")

    # -- helpers -------------------------------------------------------------------------

    def running(self) -> frozenset[str]:
        """Models that hold resources now: every process not stopped."""
        return frozenset(m for m, s in self.processes.items() if s != "stopped")

    def in_flight(self, model: str) -> int:
        return sum(1 for r in self.requests.values() if r.model == model and r.status == "granted")

    def _violation(
        self, kind: str, message: str, *, models: frozenset[str] = frozenset(), rule: str = ""
    ) -> InvariantViolation:
        self.violated = True
        return InvariantViolation(kind, message, models=models, rule=rule)

    def usage(self) -> Usage:
        """Busy and last-used models as the clients experienced them."""
        busy = frozenset(r.model for r in self.requests.values() if r.status == "granted")
        return Usage(last_used=dict(self.last_used), busy=busy)

    def finished(self, request_id: int) -> None:
        """A client finished its granted request (call before telling the scheduler)."""
        client = self.requests[request_id]
        client.status = "finished"
        self.last_used[client.model] = self.now

    def say(self, text: str) -> None:
        self.log.append(f"t={self.now:g}s {text}")

    def _sched(self) -> Scheduler:
        assert self.scheduler is not None
        return self.scheduler

    # -- Effects ---------------------------------------------------------------------------

    def grant(self, request: Request) -> bool:
        client = self.requests[request.id]
        if client.status != "waiting":
            raise self._violation(
                "exactly-once", f"request #{request.id} granted while {client.status}"
            )
        if client.gone:
            client.status = "cancelled"  # the caller left before the grant reached it
            return False
        self._check_starvation(request.model, client, "granted")
        client.status = "granted"
        self.last_used[request.model] = self.now
        self.say(f"request #{request.id} for {request.model} is served")
        return True

    def reject(self, request: Request, error: RoutingError) -> None:
        client = self.requests[request.id]
        if client.status != "waiting":
            raise self._violation(
                "exactly-once", f"request #{request.id} rejected while {client.status}"
            )
        client.status = "rejected"
        client.error = str(error)
        self.say(f"request #{request.id} for {request.model} fails: {error}")

    def start_swap(self, target: str, evict: tuple[str, ...]) -> None:
        if target in self.swaps:
            raise self._violation("exactly-once", f"two swaps to {target} at once")
        for model in evict:
            if self.in_flight(model):
                raise self._violation(
                    "busy eviction",
                    f"swap to {target} evicts {model} with {self.in_flight(model)} requests "
                    "in flight",
                    models=frozenset({model, target}),
                )
            self._check_persistent(target, model)
        first = self._sched().active_swaps()[target].waiters[0]
        self._check_starvation(target, self.requests[first.id], "started", evict)
        self.swaps[target] = evict
        words = f", stopping {', '.join(evict)}" if evict else ""
        self.say(f"swap to {target} starts{words}")

    def cancel_swap(self, target: str) -> None:
        evict = self.swaps.pop(target, ())
        for model in (*evict, target):
            if self.processes[model] != "stopped":
                self.stopping.add(model)

    def stop(self, models: tuple[str, ...], reason: str) -> None:
        for model in models:
            if self.in_flight(model):
                raise self._violation(
                    "busy eviction",
                    f"{reason} stop of {model} with {self.in_flight(model)} requests in flight",
                    models=frozenset({model}),
                )
            if self.processes[model] != "stopped":
                self.stopping.add(model)
        self.say(f"{', '.join(models)} stop ({reason})")

    def positions(self, positions: Mapping[int, int]) -> None:
        self.queue_positions = dict(positions)

    # -- judgements ------------------------------------------------------------------------

    def _check_persistent(self, target: str, evicted: str) -> None:
        group = self.scenario.group_of(evicted)
        if group is not None and group.persistent and self.scenario.group_of(target) is not group:
            raise self._violation(
                "persistent",
                f"swap to {target} evicts {evicted} of persistent group {group.name}",
                models=frozenset({target, evicted}),
                rule=f"{group.yaml_path or group.name}.persistent: true",
            )

    def _check_starvation(
        self, model: str, client: ClientRequest, what: str, evict: tuple[str, ...] = ()
    ) -> None:
        """Nothing new may delay a request that stays queued past max_wait.

        "New" means after the step from which the starving request has been queued and
        starving without a break; a request committed to a swap before that is exempt,
        and so is an older starving request, which goes first.
        """
        bound = self.scenario.max_wait
        leaving = self.stopping | {m for evict in self.swaps.values() for m in evict}
        running = (self.running() - leaving) | self.swaps.keys() | {model}
        usage = self.usage()
        for starving in self._sched().queued():
            if self.now < starving.arrival + bound or starving.model == model:
                continue
            if starving.id == client.id:
                continue
            if self.now >= client.arrival + bound and (client.arrival, client.id) < (
                starving.arrival,
                starving.id,
            ):
                continue
            since = self.starving_since.get(starving.id, self.step)
            if client.joined_step is not None and client.joined_step < since:
                continue
            blocks = starving.model in evict or model in self.scenario.policy.evict_for(
                starving.model, running, usage
            )
            if blocks:
                raise self._violation(
                    "starvation",
                    f"request #{client.id} for {model} {what} although request "
                    f"#{starving.id} for {starving.model} has waited "
                    f"{self.now - starving.arrival:g}s (bound {bound:g}s) and needs {model} gone",
                    models=frozenset({model, starving.model}),
                )

    def check(self) -> None:
        """Whole-state invariants, after every step."""
        scheduler = self._sched()
        self._note_joins()
        self._note_starving()
        self.step += 1
        counts = Counter(r.model for r in self.requests.values() if r.status == "granted")
        for model in self.scenario.models:
            if scheduler.in_flight(model) != counts[model]:
                raise self._violation(
                    "in-flight accounting",
                    f"{model}: scheduler counts {scheduler.in_flight(model)} in flight, "
                    f"clients hold {counts[model]}",
                    models=frozenset({model}),
                )
        waiting = sum(1 for r in self.requests.values() if r.status == "waiting")
        if scheduler.waiting_count() != waiting:
            raise self._violation(
                "exactly-once",
                f"scheduler has {scheduler.waiting_count()} waiting, clients {waiting}",
            )
        running = self.running()
        if len(running) > 1:
            self.co_running_sets.add(running)
        self._check_co_running(running)

    def _note_joins(self) -> None:
        for swap in self._sched().active_swaps().values():
            for waiter in swap.waiters:
                client = self.requests[waiter.id]
                if client.joined_step is None:
                    client.joined_step = self.step
                    self._check_starvation(waiter.model, client, "joined a swap")

    def _note_starving(self) -> None:
        bound = self.scenario.max_wait
        now_starving = {r.id for r in self._sched().queued() if self.now >= r.arrival + bound}
        for rid in list(self.starving_since):
            if rid not in now_starving:
                del self.starving_since[rid]
        for rid in now_starving:
            self.starving_since.setdefault(rid, self.step)

    def _check_co_running(self, running: frozenset[str]) -> None:
        scenario = self.scenario
        for group in scenario.groups or ():
            together = running & set(group.members)
            if group.swap and len(together) > 1:
                raise self._violation(
                    "swap group",
                    f"{', '.join(sorted(together))} of swap group {group.name} run together",
                    models=together,
                    rule=f"{group.yaml_path or group.name}.swap: true",
                )
        sets = scenario.matrix_sets
        if sets is not None and len(running) > 1 and not any(running <= s for s in sets):
            raise self._violation(
                "matrix",
                f"{', '.join(sorted(running))} run together but no matrix set allows it",
                models=running,
            )
        resources = scenario.resources
        if resources is not None and scenario.check_capacity and not resources.fits(running):
            raise self._violation(
                "capacity",
                f"{', '.join(sorted(running))} run together needing {resources.total(running)}, "
                f"the machine has {dict(resources.capacity)}",
                models=running,
                rule="; ".join(rules_allowing(scenario.policy, running)),
            )
