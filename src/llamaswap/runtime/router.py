"""The router actor: one task owns the scheduler, the process actors and every grant.

Requests, cancels, finishes, process announcements, clock ticks, unloads, reloads and
shutdown all arrive in one inbox and are handled one at a time by the sans-IO
`Scheduler`. The router is the scheduler's `Effects`: each method below performs one
decision at once (post a command to a process actor, answer a ticket, cut leases,
publish an event) and never calls back into the scheduler. Process actors tell the
router what happened only through their state announcements, which it hands to the
scheduler in the order they arrive; commands are posted to a process while the decision
is being made, so each process sees them in decision order.

The router's own lifecycle (accepting, reloading, draining, shutdown) is `RouterMachine`,
generated from `spec/router.fsm.yaml` and owned by the scheduler.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import anyio

from llamaswap.config import Config, ModelConfig
from llamaswap.fsm.names import ProcessState, RouterEvent, RouterState
from llamaswap.scheduling import (
    ReloadInProgress,
    Request,
    RoutingError,
    Scheduler,
    ShuttingDown,
)
from llamaswap.scheduling.from_config import (
    build_policy,
    build_probing,
    key_limits,
    model_rules,
)

from .actor import Actor, ActorGone, Reply, answer
from .callers import admit
from .events import (
    EventBus,
    ModelsConfigured,
    NeedMeasured,
    ProcessStateChanged,
    RouterSnapshot,
    RouterStateChanged,
    SwapFinished,
    SwapStarted,
)
from .launcher import SUBPROCESSES, Launcher
from .leases import Lease, Ticket
from .logs import LogRing
from .probes import ProbeFailed, measure
from .process import ProcessActor, UpstreamSettings

log = logging.getLogger("llamaswap.router")

__all__ = ["ReloadInProgress", "RouterActor"]


# --- messages ---


@dataclass
class _Submit:
    ticket: Ticket
    arrival: float


@dataclass
class _Cancel:
    request_id: int


@dataclass
class _Finish:
    request_id: int


@dataclass
class _ProcessChanged:
    actor: ProcessActor
    event: ProcessStateChanged


@dataclass
class _Tick:
    pass


@dataclass
class _Probed:
    model: str
    free: dict[str, float] | None  # None: a probe failed


@dataclass
class _Recall:
    needs: dict[str, dict[str, float]]


@dataclass
class _Unload:
    models: list[str] | None
    grace: float | None
    reply: Reply


@dataclass
class _Reload:
    config: Config
    reply: Reply


@dataclass
class _Shutdown:
    grace: float | None
    reply: Reply


class LeaseHold:
    """`async with router.lease(...)`: a class, not a generator-based context manager,
    since every request enters one (asynccontextmanager costs an async generator)."""

    __slots__ = ("_lease", "_router", "_ticket")

    def __init__(self, router: RouterActor, ticket: Ticket) -> None:
        self._router = router
        self._ticket = ticket
        self._lease: Lease | None = None

    async def __aenter__(self) -> Lease:
        router, ticket = self._router, self._ticket
        if not router.post(_Submit(ticket, time.monotonic())):
            raise ShuttingDown()
        try:
            outcome = await ticket.outcome()
        except BaseException:
            leftover = ticket.abandon()
            if leftover is not None:
                router.post(_Finish(leftover.request_id))
            else:
                router.post(_Cancel(ticket.request_id))
            raise
        ticket.abandon()
        if isinstance(outcome, RoutingError):
            raise outcome
        self._lease = outcome
        return outcome

    async def __aexit__(self, *exc_info: object) -> None:
        lease = self._lease
        if lease is not None:
            self._lease = None
            self._router.post(_Finish(lease.request_id))


class RouterActor(Actor):
    """Routes requests to upstream processes. Start it with `await tg.start(router.run)`."""

    def __init__(
        self,
        config: Config,
        *,
        bus: EventBus | None = None,
        upstream_log: LogRing | None = None,
        launcher: Launcher = SUBPROCESSES,
    ) -> None:
        super().__init__()
        self.config = config
        self._launcher = launcher
        self.bus = bus or EventBus()
        self.upstream_log = upstream_log or LogRing("upstream")
        self.model_logs: dict[str, LogRing] = {}
        self.processes: dict[str, ProcessActor] = {}
        self._retiring: dict[str, ProcessActor] = {}  # replaced by a reload, ending
        self._published = RouterSnapshot({}, {})
        self._scheduler = Scheduler(
            model_rules(config),
            build_policy(config),
            self,
            max_wait=config.routing.max_wait_seconds,
            listeners=[self],
            probing=build_probing(config),
            key_limits=key_limits(config),
        )
        self._tickets: dict[int, Ticket] = {}
        self._leases: dict[int, Lease] = {}
        self._swap_started: dict[str, float] = {}
        self._ids = itertools.count(1)
        self._timer: anyio.CancelScope | None = None
        self._timer_deadline: float | None = None
        # operators waiting for a call to take effect
        self._unloads: list[tuple[dict[str, int], Reply]] = []  # command marks, caller
        self._next_config: Config | None = None  # a reload under way
        self._reload_replies: list[Reply] = []
        self._shutdown_replies: list[Reply] = []
        self._shutdown_grace: float | None = None
        # measured capacity, for display (the decisions are the scheduler's)
        self.free: dict[str, float] = {}  # what the probes last measured
        self.measured: dict[str, dict[str, float]] = {}  # what each model was measured to use
        self._probe_failures: set[str] = set()  # resources whose failure was logged
        self._finished = False  # the router machine reached shutdown (after_transition)
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop it runs in

    # -- public API (safe from any task in the event loop) ----------------------------------

    @property
    def state(self) -> RouterState:
        """The router's lifecycle state (display only)."""
        return self._scheduler.state

    @property
    def snapshot(self) -> RouterSnapshot:
        """Queued and in-flight requests per model right now (display only)."""
        scheduler = self._scheduler
        queued = Counter(r.model for r in scheduler.queued())
        queued.update(r.model for r in scheduler.held())
        for swap in scheduler.active_swaps().values():
            queued[swap.target] += len(swap.waiters)
        return RouterSnapshot(dict(queued), scheduler.in_flight_counts())

    def model_state(self, model: str) -> ProcessState:
        """A process's lifecycle state (display only; decisions are the scheduler's)."""
        actor = self.processes.get(model)
        return actor.state if actor else ProcessState.STOPPED

    def idle_deadline(self, model: str) -> tuple[float | None, float | None]:
        """(idle since, idle limit) in the loop's clock, for display (Ollama's /api/ps)."""
        return self._scheduler.idle_deadline(model)

    def model_fault(self, model: str) -> str:
        """Why the model's last start failed, when its state is failed (display only)."""
        actor = self.processes.get(model)
        return actor.fault if actor else ""

    def lease(
        self,
        model: str,
        *,
        on_position: Callable[[int], None] | None = None,
        on_admitted: Callable[[], None] | None = None,
        may_load: bool = True,
        keep_alive: float | None = None,
    ) -> LeaseHold:
        """Wait for `model` and hold it while the body runs; raises RoutingError.

        `on_admitted` is called when the request passed admission but must wait (so a
        429 is always known before a loading stream starts); `on_position` with each
        new queue position. If the caller is cancelled while waiting it leaves the
        queue and never triggers a load; a grant that raced the cancellation is handed
        back. With `may_load=False` the router decides at once: a lease if the model
        is ready and staying, else ModelNotLoaded (nothing is started or queued).
        `keep_alive` sets the model's idle time from the end of this request (seconds;
        0: unload once idle; negative: never; None: its configured ttl).
        The request's API key (`callers.CALLER`) must be allowed the model (else
        ModelForbidden) and is the key its concurrency limit and turn are counted by.
        """
        known = self.config.models.get(model)
        key = admit(model, *(known.aliases if known else ()))
        ticket = Ticket(
            next(self._ids), model, on_position, on_admitted, may_load, keep_alive, key, self._loop
        )
        return LeaseHold(self, ticket)

    async def load(self, model: str, keep_alive: float | None = None) -> None:
        """Load `model` as a request would (same policy), without sending it anything."""
        async with self.lease(model, keep_alive=keep_alive):
            pass

    def recall_needs(self, needs: Mapping[str, Mapping[str, float]]) -> None:
        """What models were measured to use in an earlier run (kept by the activity
        store); used until they are measured again."""
        self.post(_Recall({m: dict(a) for m, a in needs.items()}))

    async def unload(self, models: Iterable[str] | None = None, grace: float | None = None) -> None:
        """Stop `models` (default: all); returns once they are stopped.

        Waiters for them get an error and requests in flight on them are cut.
        """
        chosen = list(models) if models is not None else None
        await self._call(lambda reply: _Unload(chosen, grace, reply))

    async def reload(self, config: Config) -> None:
        """Apply a new validated config: changed or removed models get new processes (or
        none), the rest keep running; returns once the new config is in force."""
        await self._call(lambda reply: _Reload(config, reply))

    async def shutdown(self, grace: float | None = None) -> None:
        """Fail every waiter, stop every process, end the router."""
        with suppress(ShuttingDown):
            await self._call(lambda reply: _Shutdown(grace, reply))

    async def _call(self, make: Callable[[Reply], Any]) -> None:
        try:
            await self.call(make)
        except ActorGone:
            raise ShuttingDown() from None

    # -- the actor ---------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """Asked after every message: a flag the router machine's listener keeps, not
        the machine's state (which builds an enum member on each read)."""
        return self._finished

    def on_started(self) -> None:
        self._loop = asyncio.get_running_loop()
        for model in self.config.models.values():
            self._add_process(model)
        self._preload(self.config)

    def handle(self, message: Any) -> None:
        now = time.monotonic()  # the asyncio loop's clock (anyio.sleep_until agrees)
        scheduler = self._scheduler
        match message:
            case _Submit(ticket=ticket, arrival=arrival):
                self._tickets[ticket.request_id] = ticket
                request = Request(
                    ticket.request_id,
                    ticket.model,
                    arrival,
                    may_load=ticket.may_load,
                    keep_alive=ticket.keep_alive,
                    key=ticket.key,
                )
                scheduler.submit(request, now)
                if ticket.request_id in self._tickets:
                    ticket.admitted()  # neither granted nor rejected: it waits
            case _Recall(needs=needs):
                scheduler.recall(needs)
                for model, amounts in needs.items():
                    if model in self.config.models:
                        self.measured.setdefault(model, dict(amounts))
            case _Cancel(request_id=request_id):
                self._tickets.pop(request_id, None)
                scheduler.cancel(request_id, now)
            case _Finish(request_id=request_id):
                self._leases.pop(request_id, None)
                scheduler.finish(request_id, now)
            case _ProcessChanged(actor=actor, event=event):
                if actor not in (self.processes.get(event.model), self._retiring.get(event.model)):
                    return  # an actor a reload has already replaced
                if event.changed:  # after the router received it: observers never lead
                    self.bus.publish(event)
                scheduler.process_changed(
                    event.model, event.new, now, event.reason, handled=event.handled
                )
            case _Tick():
                self._timer_deadline = None
                scheduler.tick(now)
            case _Probed(model=model, free=free):
                scheduler.probed(model, free, now)
            case _Unload(models=models, grace=grace, reply=reply):
                names = models if models is not None else list(self.processes)
                targets = scheduler.unload(names, now, grace)
                self._unloads.append((scheduler.marks(targets), reply))
            case _Reload():
                self._begin_reload(message, now)
            case _Shutdown(grace=grace, reply=reply):
                self._shutdown_replies.append(reply)
                if self._shutdown_grace is None:
                    self._shutdown_grace = grace
                scheduler.shutdown(now)
            case _:
                raise TypeError(f"unexpected message {message!r}")
        self._answer_operators()

    def after_batch(self) -> None:
        self._arm_timer()
        self._publish_snapshot()

    def _begin_reload(self, message: _Reload, now: float) -> None:
        if self._next_config is not None or self.state != RouterState.ACCEPTING:
            answer(message.reply, ReloadInProgress(f"cannot reload while {self.state}"))
            return
        new, old = message.config, self.config
        changed = sorted(
            m for m in old.models.keys() & new.models.keys() if new.models[m] != old.models[m]
        )
        for model in sorted(old.models.keys() - new.models.keys()) + changed:
            self._retiring[model] = self.processes.pop(model)
        self._next_config = new
        self._reload_replies.append(message.reply)
        log.info("reloading config: replacing %s", ", ".join(sorted(self._retiring)) or "nothing")
        self._scheduler.key_limits = key_limits(new)  # admission only: in force at once
        self._scheduler.reload(model_rules(new), build_policy(new), changed, now)

    def _answer_operators(self) -> None:
        """Answer the unloads, reloads and shutdowns that have taken effect."""
        scheduler = self._scheduler
        if self._unloads:
            done = [(m, r) for m, r in self._unloads if scheduler.rested(m)]
            for _, reply in done:
                answer(reply)
            self._unloads = [entry for entry in self._unloads if entry not in done]
        if self._reload_replies and self._next_config is None:
            for reply in self._reload_replies:
                answer(reply)
            self._reload_replies.clear()
            self._preload(self.config)
        if self.finished:
            for reply in [*self._shutdown_replies, *self._reload_replies]:
                answer(reply)
            for _, reply in self._unloads:
                answer(reply)

    def _add_process(self, model: ModelConfig) -> None:
        ring = self.model_logs.get(model.id)
        if ring is None:
            ring = self.model_logs[model.id] = LogRing(model.id, parents=(self.upstream_log,))
        settings = UpstreamSettings.from_model(model)
        actor = ProcessActor(settings, log_ring=ring, launcher=self._launcher)

        def on_change(event: ProcessStateChanged) -> None:
            self.post(_ProcessChanged(actor, event))

        actor.add_listener(on_change)
        self.processes[model.id] = actor
        self.spawn_child(actor.run)

    def _actor(self, model: str) -> ProcessActor:
        """The process actor for `model`, including one a reload is replacing."""
        return self._retiring.get(model) or self.processes[model]

    def _preload(self, config: Config) -> None:
        for model in config.preload:
            self.spawn_child(self._preload_one, model)

    async def _preload_one(self, model: str) -> None:
        try:
            await self.load(model)
            log.info("preloaded %s", model)
        except RoutingError as exc:
            log.warning("preloading %s failed: %s", model, exc)

    # -- the scheduler's Effects (each runs inside `handle`, returns at once) -----------------

    def grant(self, request: Request) -> bool:
        """Offer a lease to the waiting caller; False if it has left."""
        ticket = self._tickets.pop(request.id, None)
        if ticket is None:
            return False
        proxy = self.processes[request.model].settings.proxy
        lease = Lease(request.id, request.model, proxy, request.priority)
        if not ticket.offer(lease):
            return False
        self._leases[request.id] = lease
        return True

    def reject(self, request: Request, error: RoutingError) -> None:
        """Answer the waiting caller with `error` (a caller that left never hears it)."""
        ticket = self._tickets.pop(request.id, None)
        if ticket is not None:
            ticket.offer(error)

    def start(self, model: str, reason: str) -> None:
        """Post a start to the model's process (it announces its way to ready or failed)."""
        self.processes[model].request_start(reason)

    def stop(self, model: str, reason: str, grace: float | None) -> None:
        """Post a stop to the model's process (grace None: its unloadTimeout)."""
        log.info("stopping %s (%s)", model, reason)
        self._actor(model).request_stop(grace, reason)

    def shut_down(self, model: str, reason: str) -> None:
        """Post the final shutdown to the model's process (a reload or llamaswap's end)."""
        self._actor(model).request_shutdown(self._shutdown_grace, reason)

    def revoke(self, model: str, reason: str) -> None:
        """Cut the requests in flight on `model`: their leases end their streams now."""
        for lease in self._leases.values():
            if lease.model == model:
                lease.revoke(reason)

    def replace(self, models: tuple[str, ...]) -> None:
        """A reload's old processes have ended: new ones (stopped) for `models`."""
        config = self._next_config
        assert config is not None, "replace without a reload under way"
        self._retiring.clear()
        self.config = config
        self._next_config = None
        for model in models:
            self._add_process(config.models[model])
        for model in [m for m in self.measured if m in models or m not in config.models]:
            del self.measured[model]  # as the scheduler forgets them
        self.bus.publish(ModelsConfigured(tuple(config.models), models))

    def positions(self, positions: Mapping[int, int]) -> None:
        """Tell waiting callers their queue positions (for the loading stream)."""
        tickets = self._tickets
        for request_id, position in positions.items():
            ticket = tickets.get(request_id)
            if ticket is not None:
                ticket.position(position)

    def swap_began(self, target: str, evict: tuple[str, ...]) -> None:
        self._swap_started[target] = time.monotonic()
        log.info("swap to %s%s", target, f", stopping {', '.join(evict)}" if evict else "")
        self.bus.publish(SwapStarted(target, evict))

    def swap_ended(self, target: str, error: str | None) -> None:
        seconds = time.monotonic() - self._swap_started.pop(target, time.monotonic())
        self.bus.publish(SwapFinished(target, seconds, error or ""))

    def probe(self, model: str) -> None:
        """Measure every probed resource in a child task; the answer comes back in."""
        self.spawn_child(self._measure, model)

    def learned(self, model: str, amounts: Mapping[str, float]) -> None:
        """Keep what `model` was measured to use, for /api/hardware and /metrics."""
        self.measured[model] = dict(amounts)
        log.info("%s measured using %s", model, ", ".join(f"{k} {v:g}" for k, v in amounts.items()))
        self.bus.publish(NeedMeasured(model, dict(amounts)))

    async def _measure(self, model: str) -> None:
        """Run every probe; a failure is logged once (until the probe works again)."""
        free: dict[str, float] | None = {}
        for name, probe in self.config.probes.items():
            try:
                amount = await measure(probe)
            except ProbeFailed as exc:
                if name not in self._probe_failures:
                    self._probe_failures.add(name)
                    log.warning("probe of %s failed, using the declared figures: %s", name, exc)
                free = None
                break
            self._probe_failures.discard(name)
            assert free is not None
            free[name] = amount
        if free is not None:
            self.free.update(free)
        self.post(_Probed(model, free))

    # -- the router machine's listener ------------------------------------------------------

    def after_transition(self, source: Any, target: Any, event: Any) -> None:
        old, new = RouterState(source.value), RouterState(target.value)
        self._finished = new == RouterState.SHUTDOWN
        log.info("router %s -> %s", old, new)
        self.bus.publish(RouterStateChanged(old, new, RouterEvent(str(event))))

    # -- timer and snapshots ----------

    def _arm_timer(self) -> None:
        """Keep one timer for the scheduler's next deadline.

        An armed timer stays when the deadline moved later or went away: its early tick
        is harmless (the scheduler checks the clock) and re-arms. Every request moves a
        ttl deadline, so this saves a task per request.
        """
        deadline = self._scheduler.next_deadline()
        armed = self._timer_deadline
        if armed is not None and (deadline is None or deadline >= armed):
            return
        if deadline is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_deadline = deadline
        self._timer = anyio.CancelScope()
        self.spawn_child(self._tick_at, deadline, self._timer)

    async def _tick_at(self, deadline: float, scope: anyio.CancelScope) -> None:
        with scope:
            await anyio.sleep_until(deadline)
            self.post(_Tick())

    def _publish_snapshot(self) -> None:
        """Tell observers when queue or in-flight counts changed (cheap when idle)."""
        scheduler = self._scheduler
        published = self._published
        if (
            not scheduler.queued()
            and not scheduler.active_swaps()
            and not scheduler.held()
            and not published.queued
        ):
            in_flight = scheduler.in_flight_counts()
            if in_flight == published.in_flight:
                return
            current = RouterSnapshot({}, in_flight)
        else:
            current = self.snapshot
            if (current.queued, current.in_flight) == (published.queued, published.in_flight):
                return
        self._published = current
        self.bus.publish(current)
