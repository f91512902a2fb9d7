"""A fake runtime around the pure scheduler: real process cores, the router's inbox, clients
and a clock.

`World` implements the scheduler's `Effects` the way the live router does, with the
slow parts left for the exploration to decide: each model has a real `ProcessCore`
(the machine generated from `spec/process.fsm.yaml`) behind an inbox of commands, and
the cores' announcements wait in one queue (the router's inbox) until a rule delivers
them. So every interleaving the live router can see, a command overtaking an
announcement or an announcement arriving after a newer decision, is one the
exploration can choose.

Every effect is judged on the spot against the scenario's ground truth, and `check()`
judges the whole state after each step: co-running models are those whose *real*
process holds resources, never what the scheduler believes.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from llamaswap.fsm.names import (
    PROCESS_FINAL,
    PROCESS_HOLDS_RESOURCES,
    PROCESS_SERVING,
    ProcessState,
)
from llamaswap.lifecycle.ondemand import OnDemand
from llamaswap.lifecycle.process import (
    Acknowledge,
    Announce,
    Command,
    Effect,
    Message,
    PollHealth,
    ProcessCore,
    RestoreSlots,
    SaveSlots,
    ShutDown,
    Spawn,
    Start,
    Stop,
    StopHealthCheck,
    Terminate,
)
from llamaswap.scheduling import (
    CannotFit,
    Request,
    RoutingError,
    Scheduler,
    Usage,
    rules_allowing,
)

from .scenario import Scenario

STOP_GRACE = 1.0


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
    revoked: bool = False  # granted, then cut by the router (unload, crash, reload)
    keep_alive: float | None = None  # asked for: seconds, 0 = unload once idle, < 0 = never
    key: str = ""  # the API key it came with
    joined_step: int | None = None  # the step in which it was first seen waiting on a swap
    error: str = ""


@dataclass(eq=False)
class SimProcess:
    """One model's process: its real core, the commands not yet handled, and what the
    operating system is doing for it (a spawn, a health poll, a running process)."""

    model: str
    core: ProcessCore
    inbox: deque[Command] = field(default_factory=deque)
    spawning: int | None = None  # generation whose spawn has not reported yet
    polling: int | None = None  # generation whose health poll has not reported yet
    alive: int | None = None  # generation of the running process
    terminating: bool = False  # the running process was told to stop
    saving: int | None = None  # generation whose prompt-cache save has not reported yet
    restoring: int | None = None  # generation whose restore has not reported yet

    @property
    def holds_resources(self) -> bool:
        return self.core.state in PROCESS_HOLDS_RESOURCES

    def describe(self) -> str:
        return f"{self.model} ({self.core.state})"


@dataclass
class World:
    """Everything outside the scheduler, as plain data plus the real process cores."""

    scenario: Scenario
    now: float = 0.0
    processes: dict[str, SimProcess] = field(default_factory=dict)  # made on first use
    announcements: deque[tuple[SimProcess, Announce | Acknowledge]] = field(default_factory=deque)
    delivered: dict[str, ProcessState] = field(default_factory=dict)  # what the router heard
    told_to_stop: set[str] = field(default_factory=set)  # since the model's last start
    swaps: dict[str, tuple[str, ...]] = field(default_factory=dict)  # target -> evict
    requests: dict[int, ClientRequest] = field(default_factory=dict)
    queue_positions: dict[int, int] = field(default_factory=dict)
    co_running_sets: set[frozenset[str]] = field(default_factory=set)
    last_used: dict[str, float] = field(default_factory=dict)
    step: int = 0  # rules run so far
    violated: bool = False  # an invariant already failed: later judgements are moot
    starving_since: dict[int, int] = field(default_factory=dict)  # request id -> step
    idle_since: dict[str, float] = field(default_factory=dict)  # serving and unused since
    keep_alive: dict[str, float] = field(default_factory=dict)  # from the last finished request
    log: list[str] = field(default_factory=list)
    scheduler: Scheduler | None = None

    def __post_init__(self) -> None:
        self.processes = OnDemand(self._new_process)
        for model in self.scenario.models:
            self.delivered[model] = ProcessState.STOPPED

    def _new_process(self, model: str) -> SimProcess:
        persist = model in self.scenario.persist_slots
        return SimProcess(model, ProcessCore(model, persist_slots=persist))

    # -- helpers -------------------------------------------------------------------------

    def running(self) -> frozenset[str]:
        """Models whose real process holds resources now (ground truth)."""
        return frozenset(p.model for p in self.processes.values() if p.holds_resources)

    def in_flight(self, model: str, *, counting_revoked: bool = True) -> int:
        return sum(
            1
            for r in self.requests.values()
            if r.model == model and r.status == "granted" and (counting_revoked or not r.revoked)
        )

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
        if client.keep_alive is None:
            self.keep_alive.pop(client.model, None)
        else:
            self.keep_alive[client.model] = client.keep_alive
        if not self.in_flight(client.model):
            self.idle_since[client.model] = self.now

    def say(self, text: str) -> None:
        self.log.append(f"t={self.now:g}s {text}")

    def _sched(self) -> Scheduler:
        assert self.scheduler is not None
        return self.scheduler

    # -- the runtime: processes and the router's inbox ---------------------------------------

    def feed(self, process: SimProcess, message: Message) -> None:
        """Give `process`'s core one message and perform what it asks for."""
        for effect in process.core.handle(message):
            self._perform(process, effect)

    def _perform(self, process: SimProcess, effect: Effect) -> None:
        match effect:
            case Spawn(generation=generation):
                process.spawning = generation
            case PollHealth(generation=generation):
                process.polling = generation
            case StopHealthCheck():
                process.polling = None
            case Terminate():
                process.terminating = True
            case SaveSlots(generation=generation):
                process.saving = generation
            case RestoreSlots(generation=generation):
                process.restoring = generation
            case Announce():
                self.announcements.append((process, effect))
                self.say(f"{process.model} is {effect.new} ({effect.event})")
            case Acknowledge():
                self.announcements.append((process, effect))

    def deliver_announcement(self) -> None:
        """The router handles the oldest announcement in its inbox."""
        process, announce = self.announcements.popleft()
        if process is not self.processes.get(process.model):
            return  # an announcement of a process a reload has already replaced
        model = process.model
        if isinstance(announce, Acknowledge):
            self._sched().process_changed(model, announce.state, self.now, "", announce.handled)
            return
        self.delivered[model] = announce.new
        if announce.new in PROCESS_SERVING:
            self.idle_since[model] = self.now
        if announce.new not in PROCESS_HOLDS_RESOURCES:
            self.keep_alive.pop(model, None)
        self._sched().process_changed(
            model, announce.new, self.now, announce.reason, announce.handled
        )

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
        if request.model in self.told_to_stop:
            raise self._violation(
                "stale grant",
                f"request #{request.id} granted {request.model}, which the router told to stop",
                models=frozenset({request.model}),
            )
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

    def start(self, model: str, reason: str) -> None:
        self.told_to_stop.discard(model)
        self.processes[model].inbox.append(Start(reason))
        self.say(f"the router starts {model}")

    def stop(self, model: str, reason: str, grace: float | None) -> None:
        busy = self.in_flight(model, counting_revoked=False)
        if busy:
            raise self._violation(
                "busy eviction",
                f"{reason} stop of {model} with {busy} requests in flight",
                models=frozenset({model}),
            )
        if reason == "ttl":
            self._check_expiry(model)
        self.told_to_stop.add(model)
        self.processes[model].inbox.append(Stop(STOP_GRACE if grace is None else grace, reason))
        self.say(f"the router stops {model} ({reason})")

    def shut_down(self, model: str, reason: str) -> None:
        self.told_to_stop.add(model)
        self.processes[model].inbox.append(ShutDown(STOP_GRACE, reason))
        self.say(f"the router shuts {model} down ({reason})")

    def revoke(self, model: str, reason: str) -> None:
        for client in self.requests.values():
            if client.model == model and client.status == "granted":
                client.revoked = True
        self.say(f"requests in flight on {model} are cut ({reason})")

    def replace(self, models: tuple[str, ...]) -> None:
        for model in models:
            old = self.processes[model]
            if old.core.state not in PROCESS_FINAL:
                raise self._violation(
                    "reload",
                    f"a reload replaced {old.describe()} before it had ended",
                    models=frozenset({model}),
                )
            self.processes[model] = self._new_process(model)
            self.delivered[model] = ProcessState.STOPPED
            self.told_to_stop.discard(model)
        self.say(f"the reload is done; new processes for {', '.join(models) or 'nothing'}")

    def positions(self, positions: Mapping[int, int]) -> None:
        self.queue_positions = dict(positions)

    def swap_began(self, target: str, evict: tuple[str, ...]) -> None:
        if target in self.swaps:
            raise self._violation("exactly-once", f"two swaps to {target} at once")
        for model in evict:
            busy = self.in_flight(model, counting_revoked=False)
            if busy:
                raise self._violation(
                    "busy eviction",
                    f"swap to {target} evicts {model} with {busy} requests in flight",
                    models=frozenset({model, target}),
                )
            self._check_persistent(target, model)
            if not self.scenario.rules[model].swappable:
                raise self._violation(
                    "not swappable",
                    f"swap to {target} evicts {model}, which has swappable: false",
                    models=frozenset({model, target}),
                    rule=f"models.{model}.swappable: false",
                )
        first = self._sched().active_swaps()[target].waiters[0]
        self._check_starvation(target, self.requests[first.id], "started", evict)
        self.swaps[target] = evict
        words = f", stopping {', '.join(evict)}" if evict else ""
        self.say(f"swap to {target} starts{words}")

    def swap_ended(self, target: str, error: str | None) -> None:
        self.swaps.pop(target, None)
        self.say(f"swap to {target} ends" + (f": {error}" if error else ""))

    def probe(self, model: str) -> None:
        raise AssertionError("this reasons on declared figures: nothing is probed")

    def learned(self, model: str, amounts: Mapping[str, float]) -> None:
        raise AssertionError("this reasons on declared figures: nothing is measured")

    # -- judgements ------------------------------------------------------------------------

    def idle_limit(self, model: str) -> float | None:
        """How long `model` may stay idle, from the config and the clients' keep-alives
        (judged here without the scheduler's helpers)."""
        keep_alive = self.keep_alive.get(model)
        if keep_alive is not None:
            return None if keep_alive < 0 else keep_alive
        rules = self.scenario.rules[model]
        return rules.ttl if rules.ttl > 0 and rules.swappable else None

    def _check_expiry(self, model: str) -> None:
        limit = self.idle_limit(model)
        since = self.idle_since.get(model, self.now)
        if limit is None or self.now < since + limit - 1e-9:
            allowed = "never" if limit is None else f"after {limit:g}s idle"
            raise self._violation(
                "idle limit",
                f"{model} stopped for ttl after {self.now - since:g}s idle; it may go {allowed}",
                models=frozenset({model}),
            )

    def check_expired(self) -> None:
        """After the clock moved: every model idle past its limit has been told to stop
        (unless something still needs it: requests waiting for it, or a swap)."""
        waiting = {r.model for r in self.requests.values() if r.status == "waiting"}
        busy = {r.model for r in self.requests.values() if r.status == "granted"}
        swapping = set(self.swaps) | {m for evict in self.swaps.values() for m in evict}
        for model, state in self.delivered.items():
            limit = self.idle_limit(model)
            if (
                limit is None
                or state not in PROCESS_SERVING
                or model in self.told_to_stop | waiting | busy | swapping
                or self.now < self.idle_since.get(model, self.now) + limit
            ):
                continue
            raise self._violation(
                "idle limit",
                f"{model} has been idle {self.now - self.idle_since[model]:g}s, past its "
                f"limit of {limit:g}s, and was not stopped",
                models=frozenset({model}),
            )

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
        leaving = self.told_to_stop | {m for evict in self.swaps.values() for m in evict}
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
            blocks = starving.model in evict or model in self._needs_gone(
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

    def _needs_gone(self, model: str, running: frozenset[str], usage: Usage) -> tuple[str, ...]:
        """What must stop for `model` to run; nothing when it cannot run at all now (a
        request for it fails rather than waits, so nobody delays it)."""
        try:
            return self.scenario.policy.evict_for(model, running, usage)
        except CannotFit:
            return ()

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
        self._check_key_limits()
        running = self.running()
        if len(running) > 1:
            self.co_running_sets.add(running)
        self._check_co_running(running)

    def _check_key_limits(self) -> None:
        """Admitted requests per key (held during a reload are not admitted yet)."""
        unadmitted = {r.id for r in self._sched().held()}
        held = Counter(
            r.key
            for r in self.requests.values()
            if r.key and r.status in ("waiting", "granted") and r.id not in unadmitted
        )
        for key, limit in self.scenario.key_limits.items():
            if limit and held[key] > limit:
                raise self._violation(
                    "key limit",
                    f"key {key} holds {held[key]} requests, its concurrencyLimit is {limit}",
                )

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
        if len(running) > 1 and not scenario.matrix_allows(running):
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
