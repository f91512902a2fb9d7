"""The router actor: one task owns the scheduler, the process actors and every grant.

Requests, cancels, finishes, swap results, process state changes, clock ticks,
unloads, reloads and shutdown all arrive in one inbox and are handled one at a time
by the pure `Scheduler`; the router is its `Effects`. Slow work (a swap: stop the
evictees, then ensure the target is ready; a stop; a shutdown) runs in child tasks
that report back through the inbox. Messages to process actors are posted while the
decision is being made, so each process sees them in decision order (a ttl stop
decided before a request is handled before that request's start).

The router's own lifecycle (accepting, reloading, draining, shutdown) is
`RouterMachine`, generated from `spec/router.fsm.yaml`.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from llamaswap.config import Config, ModelConfig
from llamaswap.fsm import RouterMachine
from llamaswap.scheduling import Request, RoutingError, Scheduler, ShuttingDown
from llamaswap.scheduling.from_config import build_policy, model_rules

from .events import (
    EventBus,
    ModelsConfigured,
    ProcessStateChanged,
    RouterSnapshot,
    RouterStateChanged,
    SwapFinished,
    SwapStarted,
)
from .launcher import SUBPROCESSES, Launcher
from .leases import Lease, Ticket
from .logs import LogRing
from .process import Pending, ProcessActor, ProcessShutdown, StartFailed, UpstreamSettings

log = logging.getLogger("llamaswap.router")

Reply = MemoryObjectSendStream[BaseException | None]


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
class _SwapDone:
    target: str
    error: str | None
    scope: anyio.CancelScope


@dataclass
class _ProcessChanged:
    actor: ProcessActor
    event: ProcessStateChanged


@dataclass
class _Tick:
    pass


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
class _ReloadDone:
    config: Config
    reply: Reply


@dataclass
class _Shutdown:
    grace: float | None
    reply: Reply


@dataclass
class _Drained:
    """Every process has shut down."""


def _answer(reply: Reply, error: BaseException | None = None) -> None:
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
        reply.send_nowait(error)
    reply.close()


class ReloadInProgress(RuntimeError):
    """A config reload was asked for while another one is being applied."""


# --- the actor ---


class RouterActor:
    """Routes requests to upstream processes. Start it with `await tg.start(router.run)`."""

    def __init__(
        self,
        config: Config,
        *,
        bus: EventBus | None = None,
        upstream_log: LogRing | None = None,
        launcher: Launcher = SUBPROCESSES,
    ) -> None:
        self.config = config
        self._launcher = launcher
        self.bus = bus or EventBus()
        self.upstream_log = upstream_log or LogRing("upstream")
        self.model_logs: dict[str, LogRing] = {}
        self.processes: dict[str, ProcessActor] = {}
        self._retiring: dict[str, ProcessActor] = {}  # replaced by a reload, still stopping
        self._published = RouterSnapshot({}, {})
        self._machine = RouterMachine(listeners=[_Announcer(self.bus)])
        self._send, self._inbox = anyio.create_memory_object_stream[Any](math.inf)
        self._scheduler = self._new_scheduler(config)
        self._tickets: dict[int, Ticket] = {}
        self._leases: dict[int, Lease] = {}
        self._swaps: dict[str, anyio.CancelScope] = {}
        self._swap_started: dict[str, float] = {}
        self._held: list[_Submit] = []  # submits that arrived during a reload
        self._ids = itertools.count(1)
        self._tg: TaskGroup | None = None
        self._timer: anyio.CancelScope | None = None
        self._timer_deadline: float | None = None
        self._shutdown_replies: list[Reply] = []

    # -- public API (safe from any task in the event loop) ----------------------------------

    @property
    def state(self) -> str:
        """The router's lifecycle state (display only)."""
        return str(self._machine.current_state_value)

    @property
    def snapshot(self) -> RouterSnapshot:
        """Queued and in-flight requests per model right now (display only)."""
        scheduler = self._scheduler
        queued = Counter(r.model for r in scheduler.queued())
        for swap in scheduler.active_swaps().values():
            queued[swap.target] += len(swap.waiters)
        return RouterSnapshot(dict(queued), scheduler.in_flight_counts())

    def model_state(self, model: str) -> str:
        """A process's lifecycle state (display only; decisions use the scheduler's view)."""
        actor = self.processes.get(model)
        return actor.state if actor else "stopped"

    @asynccontextmanager
    async def lease(
        self,
        model: str,
        *,
        on_position: Callable[[int], None] | None = None,
        on_admitted: Callable[[], None] | None = None,
        may_load: bool = True,
    ) -> AsyncIterator[Lease]:
        """Wait for `model` and hold it while the body runs; raises RoutingError.

        `on_admitted` is called when the request passed admission but must wait (so a
        429 is always known before a loading stream starts); `on_position` with each
        new queue position. If the caller is cancelled while waiting it leaves the
        queue and never triggers a load; a grant that raced the cancellation is handed
        back. With `may_load=False` the router decides at once: a lease if the model
        is ready and staying, else ModelNotLoaded (nothing is started or queued).
        """
        ticket = Ticket(next(self._ids), model, on_position, on_admitted, may_load)
        if not self._post(_Submit(ticket, time.monotonic())):
            raise ShuttingDown()
        try:
            outcome = await ticket.outcome()
        except BaseException:
            leftover = ticket.abandon()
            if leftover is not None:
                self._post(_Finish(leftover.request_id))
            else:
                self._post(_Cancel(ticket.request_id))
            raise
        ticket.abandon()
        if isinstance(outcome, RoutingError):
            raise outcome
        try:
            yield outcome
        finally:
            self._post(_Finish(outcome.request_id))

    async def load(self, model: str) -> None:
        """Load `model` as a request would (same policy), without sending it anything."""
        async with self.lease(model):
            pass

    async def unload(self, models: Iterable[str] | None = None, grace: float | None = None) -> None:
        """Stop `models` (default: all); returns once they are stopped.

        Waiters for them get an error and requests in flight on them are cut.
        """
        chosen = list(models) if models is not None else None
        await self._call(lambda reply: _Unload(chosen, grace, reply))

    async def reload(self, config: Config) -> None:
        """Apply a new validated config: stop changed or removed models, keep the rest."""
        await self._call(lambda reply: _Reload(config, reply))

    async def shutdown(self, grace: float | None = None) -> None:
        """Fail every waiter, stop every process, end the router."""
        with contextlib.suppress(ShuttingDown):
            await self._call(lambda reply: _Shutdown(grace, reply))

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            for model in self.config.models.values():
                self._add_process(model)
            task_status.started()
            self._preload(self.config)
            async with self._inbox:
                async for message in self._inbox:
                    self._handle(message)
                    if not self._handle_waiting():
                        break
                    self._after_step()
            self._send.close()
            tg.cancel_scope.cancel()

    def _handle_waiting(self) -> bool:
        """Handle every message already waiting, then let `_after_step` run once.

        Under load many requests arrive and finish per loop turn; one timer check and
        one snapshot per batch instead of per message. False once the router shut down.
        """
        while self.state != "shutdown":
            try:
                message = self._inbox.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream):
                return True  # the `async for` waits for, or notices the end of, the inbox
            self._handle(message)
        return False

    # -- plumbing ----------

    def _post(self, message: Any) -> bool:
        try:
            self._send.send_nowait(message)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return False
        return True

    async def _call(self, make: Callable[[Reply], Any]) -> None:
        send, receive = anyio.create_memory_object_stream[BaseException | None](1)
        with receive:
            if not self._post(make(send)):
                send.close()
                raise ShuttingDown()
            try:
                error = await receive.receive()
            except anyio.EndOfStream:
                raise ShuttingDown() from None
        if error is not None:
            raise error

    def _spawn(self, func: Callable[..., Any], *args: Any) -> None:
        assert self._tg is not None, "RouterActor.run() is not running"
        self._tg.start_soon(func, *args)

    def _now(self) -> float:
        # The asyncio loop's clock is time.monotonic(); calling it directly skips
        # anyio's backend lookup on every step (anyio.sleep_until agrees with it).
        return time.monotonic()

    def _new_scheduler(self, config: Config) -> Scheduler:
        return Scheduler(
            model_rules(config),
            build_policy(config),
            _Effects(self),
            max_wait=config.routing.max_wait_seconds,
        )

    def _add_process(self, model: ModelConfig) -> None:
        ring = self.model_logs.get(model.id)
        if ring is None:
            ring = self.model_logs[model.id] = LogRing(model.id, parents=(self.upstream_log,))
        settings = UpstreamSettings.from_model(model)
        actor = ProcessActor(settings, log_ring=ring, launcher=self._launcher)

        def on_change(event: ProcessStateChanged) -> None:
            self._post(_ProcessChanged(actor, event))

        actor.add_listener(on_change)
        self.processes[model.id] = actor
        self._spawn(actor.run)

    def _preload(self, config: Config) -> None:
        for model in config.preload:
            self._spawn(self._preload_one, model)

    async def _preload_one(self, model: str) -> None:
        try:
            await self.load(model)
            log.info("preloaded %s", model)
        except RoutingError as exc:
            log.warning("preloading %s failed: %s", model, exc)

    # -- message handling (runs only in the actor task) ----------

    def _handle(self, message: Any) -> None:
        now = self._now()
        scheduler = self._scheduler
        match message:
            case _Submit(ticket=ticket, arrival=arrival):
                if self.state == "reloading":
                    self._held.append(message)
                    return
                self._tickets[ticket.request_id] = ticket
                request = Request(
                    ticket.request_id, ticket.model, arrival, may_load=ticket.may_load
                )
                scheduler.submit(request, now)
                if ticket.request_id in self._tickets:
                    ticket.admitted()  # neither granted nor rejected: it waits
            case _Cancel(request_id=request_id):
                self._tickets.pop(request_id, None)
                self._held = [h for h in self._held if h.ticket.request_id != request_id]
                scheduler.cancel(request_id, now)
            case _Finish(request_id=request_id):
                self._leases.pop(request_id, None)
                scheduler.finish(request_id, now)
            case _SwapDone(target=target, error=error, scope=scope):
                if self._swaps.get(target) is not scope:
                    return  # a swap cancelled by an unload, reload or shutdown
                del self._swaps[target]
                seconds = now - self._swap_started.pop(target, now)
                self.bus.publish(SwapFinished(target, seconds, error or ""))
                scheduler.swap_done(target, error, now)
            case _ProcessChanged(actor=actor, event=event):
                self.bus.publish(event)  # after the router knows, so observers never lead it
                if self.processes.get(event.model) is not actor:
                    return  # an actor replaced by a reload
                if event.old == "ready" and event.new == "stopped":
                    self._revoke(lambda lease: lease.model == event.model, "upstream exited")
                scheduler.process_state(event.model, event.new, now)
            case _Tick():
                self._timer_deadline = None
                scheduler.tick(now)
            case _Unload():
                self._on_unload(message, now)
            case _Reload():
                self._on_reload(message, now)
            case _ReloadDone():
                self._on_reload_done(message, now)
            case _Shutdown():
                self._on_shutdown(message, now)
            case _Drained():
                self._machine.send("drained")
                for reply in self._shutdown_replies:
                    _answer(reply)
            case _:
                raise TypeError(f"unexpected message {message!r}")

    def _after_step(self) -> None:
        self._arm_timer()
        self._publish_snapshot()

    def _on_unload(self, message: _Unload, now: float) -> None:
        names = message.models if message.models is not None else list(self.processes)
        targets = self._scheduler.unload(names, now)
        chosen = set(targets)
        self._revoke(lambda lease: lease.model in chosen, "model unloaded")
        stops = [self.processes[m].request_stop(message.grace) for m in targets]
        self._spawn(self._await_then_answer, stops, message.reply)

    def _on_reload(self, message: _Reload, now: float) -> None:
        if self.state != "accepting":
            _answer(message.reply, ReloadInProgress(f"cannot reload while {self.state}"))
            return
        new = message.config
        old = self.config
        replaced = sorted(
            m for m, model in old.models.items() if m not in new.models or new.models[m] != model
        )
        self._machine.send("reload")
        # Waiters for a changed model wait for its new process; those for a removed one fail.
        self._scheduler.retire([m for m in replaced if m in new.models], now)
        self._scheduler.unload([m for m in replaced if m not in new.models], now)
        self._revoke(lambda lease: lease.model in replaced, "config reloaded")
        for model in replaced:
            self._retiring[model] = self.processes.pop(model)
        stops = [self._retiring[m].request_shutdown() for m in replaced]
        log.info("reloading config: restarting %s", ", ".join(replaced) or "nothing")
        self._spawn(self._reload_after_stops, stops, new, message.reply)

    async def _reload_after_stops(self, stops: list[Pending], config: Config, reply: Reply) -> None:
        await self._await_all(stops)
        self._post(_ReloadDone(config, reply))

    def _on_reload_done(self, message: _ReloadDone, now: float) -> None:
        config = message.config
        self._retiring.clear()
        fresh = [m for m in config.models.values() if m.id not in self.processes]
        for model in fresh:
            self._add_process(model)
        self.config = config
        scheduler = self._scheduler
        scheduler.reconfigure(model_rules(config), build_policy(config), (), now)
        for model in fresh:
            scheduler.process_state(model.id, "stopped", now)
        self._machine.send("reload_done")
        self.bus.publish(ModelsConfigured(tuple(config.models), tuple(m.id for m in fresh)))
        held, self._held = self._held, []
        for submit in held:
            self._handle(submit)
        _answer(message.reply)
        self._preload(config)

    def _on_shutdown(self, message: _Shutdown, now: float) -> None:
        self._shutdown_replies.append(message.reply)
        if self.state in ("draining", "shutdown"):
            return
        self._machine.send("drain")
        self._scheduler.shutdown(now)
        for submit in self._held:
            submit.ticket.offer(ShuttingDown())
        self._held.clear()
        self._revoke(lambda lease: True, "llamaswap is shutting down")
        stops = [actor.request_shutdown(message.grace) for actor in self.processes.values()]
        self._spawn(self._drain_then_report, stops)

    async def _drain_then_report(self, stops: list[Pending]) -> None:
        await self._await_all(stops)
        self._post(_Drained())

    def _actor(self, model: str) -> ProcessActor:
        """The process actor for `model`, including one a reload is still retiring."""
        return self.processes.get(model) or self._retiring[model]

    def _revoke(self, which: Callable[[Lease], bool], reason: str) -> None:
        for lease in self._leases.values():
            if which(lease):
                lease.revoke(reason)

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
        self._spawn(self._tick_at, deadline, self._timer)

    async def _tick_at(self, deadline: float, scope: anyio.CancelScope) -> None:
        with scope:
            await anyio.sleep_until(deadline)
            self._post(_Tick())

    def _publish_snapshot(self) -> None:
        """Tell observers when queue or in-flight counts changed (cheap when idle)."""
        scheduler = self._scheduler
        published = self._published
        if not scheduler.queued() and not scheduler.active_swaps() and not published.queued:
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

    # -- child tasks ----------

    async def _run_swap(self, target: str, stops: list[Pending], scope: anyio.CancelScope) -> None:
        error: str | None = None
        with scope:
            await self._await_all(stops)
            if scope.cancel_called:
                return
            try:
                await self.processes[target].request_ready().wait()
            except StartFailed as exc:
                error = str(exc)
        if not scope.cancel_called:
            self._post(_SwapDone(target, error, scope))

    async def _await_stop(self, model: str, pending: Pending, reason: str) -> None:
        await self._await_all([pending])
        log.info("%s stopped (%s)", model, reason)

    async def _await_then_answer(self, stops: list[Pending], reply: Reply) -> None:
        await self._await_all(stops)
        _answer(reply)

    @staticmethod
    async def _await_all(pendings: list[Pending]) -> None:
        """Wait for every reply; stop errors (a process already shut down) are not failures."""
        try:
            for pending in pendings:
                with contextlib.suppress(ProcessShutdown, StartFailed):
                    await pending.wait()
        finally:
            for pending in pendings:
                pending.forget()


class _Effects:
    """The scheduler's hands: every method returns at once (called inside the actor)."""

    def __init__(self, router: RouterActor) -> None:
        self._router = router

    def grant(self, request: Request) -> bool:
        router = self._router
        ticket = router._tickets.pop(request.id, None)
        if ticket is None:
            return False
        proxy = router.processes[request.model].settings.proxy
        lease = Lease(request.id, request.model, proxy, request.priority)
        if not ticket.offer(lease):
            return False
        router._leases[request.id] = lease
        return True

    def reject(self, request: Request, error: RoutingError) -> None:
        ticket = self._router._tickets.pop(request.id, None)
        if ticket is not None:
            ticket.offer(error)

    def start_swap(self, target: str, evict: tuple[str, ...]) -> None:
        router = self._router
        stops = [router._actor(m).request_stop() for m in evict]  # posted now, in order
        scope = anyio.CancelScope()
        router._swaps[target] = scope
        router._swap_started[target] = router._now()
        log.info("swap to %s%s", target, f", stopping {', '.join(evict)}" if evict else "")
        router.bus.publish(SwapStarted(target, evict))
        router._spawn(router._run_swap, target, stops, scope)

    def cancel_swap(self, target: str) -> None:
        scope = self._router._swaps.pop(target, None)
        self._router._swap_started.pop(target, None)
        if scope is not None:
            scope.cancel()

    def stop(self, models: tuple[str, ...], reason: str) -> None:
        router = self._router
        for model in models:
            log.info("stopping %s (%s)", model, reason)
            pending = router._actor(model).request_stop()
            router._spawn(router._await_stop, model, pending, reason)

    def positions(self, positions: Mapping[int, int]) -> None:
        tickets = self._router._tickets
        for request_id, position in positions.items():
            ticket = tickets.get(request_id)
            if ticket is not None:
                ticket.position(position)


class _Announcer:
    """RouterMachine listener: publishes the router's lifecycle changes."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus

    def after_transition(self, source: Any, target: Any) -> None:
        log.info("router %s -> %s", source.id, target.id)
        self._bus.publish(RouterStateChanged(source.id, target.id))
