"""The sans-IO scheduler: every routing decision, with no I/O, no clock and no awaits.

The router actor feeds it events (a request, a cancel, a finished request, a finished
swap, a process state change, a clock tick, an unload, a shutdown), each stamped with
the current time, and it answers through a small `Effects` interface: grant, reject,
start a swap, cancel a swap, stop idle models, publish queue positions. Because it is
plain synchronous code, Hypothesis drives it directly in `tests/property/`.

Decision tree for a request (llama-swap's FIFO scheduler, plus a starvation bound):
unknown model -> error; over concurrencyLimit -> 429; a swap to the same model is in
flight -> join it; ready, nothing to evict, nobody evicting it -> grant (fast path);
collides with an in-flight swap -> queue; would evict a model with requests in flight
-> queue; otherwise start a swap. Swaps with disjoint evict sets run in parallel.

Starvation bound: once a queued request has waited `max_wait` seconds, nothing new may
make it wait longer: no grant, join or swap for a model it would have to evict, and no
swap that evicts its model. It is then served as soon as the requests already in
flight on its evictees finish.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from .errors import (
    ModelNotFound,
    ModelNotLoaded,
    ModelUnloaded,
    RoutingError,
    ShuttingDown,
    SwapFailed,
    TooManyRequests,
    Unschedulable,
)
from .policies import CannotFit, Policy, Usage

RUNNING_STATES = frozenset({"starting", "ready", "stopping"})


@dataclass(frozen=True)
class ModelRules:
    """The per-model settings the scheduler needs."""

    limit: int = 10
    priority: int = 0
    ttl: float = 0.0  # idle seconds before unload; 0 = never


@dataclass(eq=False)
class Request:
    """One admitted request, identified by `id` (compared by identity).

    `may_load=False` (llama-swap's upstream.ignorePaths) is served only by a model that
    is ready and staying; it never starts, joins or queues for a swap.
    """

    id: int
    model: str
    arrival: float
    priority: int = 0
    may_load: bool = True


@dataclass
class Swap:
    """A swap in flight: `evict` is being stopped, then `target` started."""

    target: str
    evict: tuple[str, ...]
    waiters: list[Request] = field(default_factory=list)
    started: float = 0.0


def _seniority(request: Request) -> tuple[float, int]:
    """Order among starving requests: oldest first, then the earlier id."""
    return (request.arrival, request.id)


class Effects(Protocol):
    """How the scheduler acts on the world. Every call must return at once."""

    def grant(self, request: Request) -> bool:
        """Hand the model to the caller; False if the caller has already left."""
        ...

    def reject(self, request: Request, error: RoutingError) -> None: ...

    def start_swap(self, target: str, evict: tuple[str, ...]) -> None: ...

    def cancel_swap(self, target: str) -> None: ...

    def stop(self, models: tuple[str, ...], reason: str) -> None: ...

    def positions(self, positions: Mapping[int, int]) -> None:
        """Queue positions (request id -> 1-based) after the queue changed."""
        ...


class Scheduler:
    """Queue, in-flight counts and the decision tree for one router."""

    def __init__(
        self,
        rules: Mapping[str, ModelRules],
        policy: Policy,
        effects: Effects,
        *,
        max_wait: float = 60.0,
    ) -> None:
        self.rules = dict(rules)
        self.policy = policy
        self.max_wait = max_wait
        self._effects = effects
        self._view: dict[str, str] = dict.fromkeys(self.rules, "stopped")
        self._active: dict[str, Swap] = {}
        self._queue: list[Request] = []
        self._waiting: dict[int, Request] = {}  # admitted, not yet granted
        self._granted: dict[int, str] = {}  # request id -> model, while in flight
        self._in_flight: dict[str, int] = {}  # only models with requests in flight
        self._reserved: dict[str, int] = {}  # queued + waiting + in flight, per model
        self._last_used: dict[str, float] = {}
        self._idle_since: dict[str, float] = {}
        self._closed = False
        self._retiring: set[str] = set()  # replaced by a reload under way: not served yet
        self._running: frozenset[str] | None = None  # cache of running(); see _changed()
        # live views: the policies read them without copies
        self._usage = Usage(last_used=self._last_used, busy=self._in_flight.keys())

    # -- read-only views (for snapshots, metrics and tests) -----------------------------

    def state_of(self, model: str) -> str:
        return self._view.get(model, "stopped")

    def in_flight(self, model: str) -> int:
        return self._in_flight.get(model, 0)

    def in_flight_counts(self) -> dict[str, int]:
        """Requests in flight per model (only models that have some)."""
        return dict(self._in_flight)

    def queued(self) -> list[Request]:
        return list(self._queue) if self._queue else []

    def active_swaps(self) -> dict[str, Swap]:
        return dict(self._active) if self._active else {}

    def waiting_count(self) -> int:
        return len(self._waiting)

    def granted_count(self) -> int:
        return len(self._granted)

    def running(self) -> frozenset[str]:
        """Models holding resources now or committed to: not stopped, or a swap target."""
        if self._running is None:
            running = {m for m, state in self._view.items() if state in RUNNING_STATES}
            self._running = frozenset(running | self._active.keys())
        return self._running

    def _changed(self) -> None:
        """Call after any change to the process view or the active swaps."""
        self._running = None

    def _staying(self) -> frozenset[str]:
        """Running models that will still run once the stops under way complete."""
        leaving = {m for swap in self._active.values() for m in swap.evict}
        leaving |= {m for m, state in self._view.items() if state == "stopping"}
        return self.running() - (leaving - self._active.keys())

    def next_deadline(self) -> float | None:
        """When `tick` should be called next (the earliest ttl expiry), if ever."""
        deadlines = [since + self.rules[m].ttl for m, since in self._idle_since.items()]
        return min(deadlines) if deadlines else None

    # -- events ---------------------------------------------------------------------------

    def submit(self, request: Request, now: float) -> None:
        """A new request: admit it (or reject it) and decide."""
        model = request.model
        if self._closed:
            self._effects.reject(request, ShuttingDown())
            return
        rules = self.rules.get(model)
        if rules is None:
            self._effects.reject(request, ModelNotFound(model))
            return
        reserved = self._reserved.get(model, 0)
        if reserved >= rules.limit:
            self._effects.reject(request, TooManyRequests(model, rules.limit))
            return
        request.priority = rules.priority
        self._reserved[model] = reserved + 1
        self._waiting[request.id] = request
        if not self._place(request, now):
            self._enqueue(request)
            self._publish_positions(now)

    def cancel(self, request_id: int, now: float) -> None:
        """The caller left before it was granted: forget it; it never triggers a load."""
        request = self._waiting.pop(request_id, None)
        if request is None:
            return
        swap = self._active.get(request.model)
        if swap is not None and request in swap.waiters:
            swap.waiters.remove(request)
        elif request in self._queue:
            self._queue.remove(request)
        self._release(request.model)
        self._drain(now)

    def finish(self, request_id: int, now: float) -> None:
        """A granted request finished (successfully or not)."""
        model = self._granted.pop(request_id, None)
        if model is None:
            return
        remaining = self._in_flight[model] - 1
        self._release(model)
        self._last_used[model] = now
        if remaining > 0:
            self._in_flight[model] = remaining
        else:
            del self._in_flight[model]
            self._mark_idle(model, now)
            self._drain(now)

    def swap_done(self, target: str, error: str | None, now: float) -> None:
        """The swap task for `target` ended; `error` says why it failed, if it did."""
        swap = self._active.pop(target, None)
        if swap is None:
            return  # cancelled by an unload or shutdown
        self._changed()
        if error is None and self._view.get(target) != "ready":
            error = f"model {target} is {self._view.get(target)} after its start"
        for waiter in swap.waiters:
            if error is None:
                self._grant(waiter, now)
            else:
                self._fail(waiter, SwapFailed(error))
        if error is None:
            self._mark_idle(target, now)
        self._drain(now)

    def process_state(self, model: str, state: str, now: float) -> None:
        """A process actor reported a state change."""
        if model not in self.rules:
            return
        self._view[model] = state
        self._changed()
        if state == "ready":
            self._mark_idle(model, now)
        else:
            self._idle_since.pop(model, None)
        if state in ("stopped", "shutdown"):
            self._drain(now)

    def tick(self, now: float) -> None:
        """Time passed: stop models idle for longer than their ttl."""
        expired = [
            m
            for m, since in self._idle_since.items()
            if now >= since + self.rules[m].ttl and self._may_expire(m)
        ]
        for model in expired:
            del self._idle_since[model]
            self._view[model] = "stopping"
            self._changed()
        if expired:
            self._effects.stop(tuple(sorted(expired)), "ttl")

    def unload(self, models: Iterable[str], now: float) -> tuple[str, ...]:
        """Fail everyone waiting for `models` and mark them stopping; return the known ones.

        The caller stops the processes (right away, before any other decision) and does
        not wait for in-flight requests (llama-swap #125: unload cuts streams).
        """
        targets = sorted(set(models) & self.rules.keys())
        for model in targets:
            self._cancel_swap_of(model, ModelUnloaded)
            for request in [r for r in self._queue if r.model == model]:
                self._queue.remove(request)
                self._fail(request, ModelUnloaded(model))
            if self._view.get(model) in RUNNING_STATES:
                self._view[model] = "stopping"
            self._idle_since.pop(model, None)
        self._changed()
        self._drain(now)
        return tuple(targets)

    def retire(self, models: Iterable[str], now: float) -> None:
        """A reload replaces `models`: stop them, and hold their waiters until it is done.

        Their swaps are cancelled and their waiters go back to the queue, where they keep
        their place and their starvation bound but are not served until `reconfigure`
        brings the new config (its processes are the ones that will serve them).
        """
        chosen = sorted(set(models) & self.rules.keys())
        self._take_down(chosen)
        self._retiring.update(chosen)
        self._drain(now)

    def _take_down(self, models: Iterable[str]) -> None:
        """Mark `models` stopping; swaps to them are cancelled and their waiters queue
        again at the front (a reload will serve them from the new process)."""
        for model in models:
            swap = self._active.pop(model, None)
            if swap is not None:
                self._effects.cancel_swap(model)
                self._queue[:0] = swap.waiters
            if self._view.get(model) in RUNNING_STATES:
                self._view[model] = "stopping"
            self._idle_since.pop(model, None)
        self._changed()

    def shutdown(self, now: float) -> None:
        """Fail everyone waiting; refuse everything from now on."""
        self._closed = True
        for target in list(self._active):
            self._cancel_swap_of(target, lambda _model: ShuttingDown())
        for request in list(self._queue):
            self._fail(request, ShuttingDown())
        self._queue.clear()
        self._idle_since.clear()
        self._changed()

    def reconfigure(
        self, rules: Mapping[str, ModelRules], policy: Policy, changed: Iterable[str], now: float
    ) -> tuple[str, ...]:
        """Apply a reloaded config. Returns the models to stop (changed or removed).

        Requests waiting for a removed model fail; those for a changed model stay and
        are served by its new process.
        """
        self._retiring.clear()
        removed = sorted(self.rules.keys() - rules.keys())
        restart = sorted(set(changed) & self.rules.keys() & rules.keys())
        for model in removed:
            self._cancel_swap_of(model, ModelNotFound)
            for request in [r for r in self._queue if r.model == model]:
                self._queue.remove(request)
                self._fail(request, ModelNotFound(model))
        self._take_down(restart)
        self.rules = dict(rules)
        self.policy = policy
        for model in self.rules:
            self._view.setdefault(model, "stopped")
        for model in removed:
            self._view.pop(model, None)
            self._idle_since.pop(model, None)
        self._changed()
        self._drain(now)
        return tuple(removed + restart)

    # -- the decision tree ------------------------------------------------------------------

    def _place(self, request: Request, now: float) -> bool:
        """Grant, join or start a swap for `request`; False means it must queue."""
        if not request.may_load:
            self._place_without_loading(request, now)
            return True
        model = request.model
        if model in self._retiring:
            return False
        blockers = self._blockers(request, now)
        swap = self._active.get(model)
        if swap is not None:
            if blockers and self._delays(model, (), blockers):
                return False
            swap.waiters.append(request)
            return True
        try:
            evict = self.policy.evict_for(model, self.running(), self._usage)
        except CannotFit as exc:
            self._fail(request, Unschedulable(str(exc)))
            return True
        if blockers and self._delays(model, evict, blockers):
            return False
        if self._collides(model, evict):
            return False
        if not evict and self._view.get(model) == "ready":
            self._grant(request, now)
            return True
        if self._any_busy(evict):
            return False
        self._active[model] = Swap(model, evict, [request], now)
        self._changed()
        for evictee in evict:
            self._idle_since.pop(evictee, None)
        self._idle_since.pop(model, None)
        self._effects.start_swap(model, evict)
        return True

    def _place_without_loading(self, request: Request, now: float) -> None:
        """Grant now if the model is ready and nothing is taking it away, else reject.

        Never queued: by the time it left the queue its model could be gone, and then
        serving it would mean loading it.
        """
        model = request.model
        blockers = self._blockers(request, now)
        loaded = (
            self._view.get(model) == "ready"
            and model not in self._active
            and model in self._staying()
            and not self._would_evict(model)
        )
        if loaded and not (blockers and self._delays(model, (), blockers)):
            self._grant(request, now)
        else:
            self._fail(request, ModelNotLoaded(model))

    def _would_evict(self, model: str) -> bool:
        try:
            return bool(self.policy.evict_for(model, self.running(), self._usage))
        except CannotFit:
            return True

    def _collides(self, target: str, evict: tuple[str, ...]) -> bool:
        """Would a swap (target, evict) step on a swap already in flight?"""
        for other in self._active.values():
            if other.target == target:
                continue
            if other.target in evict or target in other.evict:
                return True
            if not set(evict).isdisjoint(other.evict):
                return True
        return False

    def _any_busy(self, models: tuple[str, ...]) -> bool:
        """Does any of `models` have requests in flight? (Those are never stopped.)"""
        return any(m in self._in_flight for m in models)

    def _blockers(self, request: Request, now: float) -> list[Request]:
        """Queued requests past the starvation bound that take precedence over `request`.

        Among starving requests the oldest goes first (ties: the earlier request id).
        """
        if not self._queue:
            return []
        starving_self = now >= request.arrival + self.max_wait
        return [
            other
            for other in self._queue
            if other is not request
            and now >= other.arrival + self.max_wait
            and (not starving_self or _seniority(other) < _seniority(request))
        ]

    def _delays(self, model: str, evict: tuple[str, ...], blockers: list[Request]) -> bool:
        """Would serving `model` (evicting `evict`) make a starving request wait longer?"""
        running = self._staying() | {model}
        usage = self._usage
        for starving in blockers:
            if starving.model == model:
                continue
            if starving.model in evict:
                return True
            try:
                if model in self.policy.evict_for(starving.model, running, usage):
                    return True
            except CannotFit:
                continue
        return False

    # -- bookkeeping --------------------------------------------------------------------------

    def _drain(self, now: float) -> None:
        """Walk the queue in order and place what can be placed now."""
        if not self._queue:
            return
        for request in self._processing_order(now):
            if request in self._queue and self._place(request, now):
                self._queue.remove(request)
        self._publish_positions(now)

    def _processing_order(self, now: float) -> list[Request]:
        """Starving requests first (oldest first), then the queue's priority/FIFO order."""
        starving = sorted(
            (r for r in self._queue if now >= r.arrival + self.max_wait), key=_seniority
        )
        return starving + [r for r in self._queue if r not in starving]

    def _enqueue(self, request: Request) -> None:
        """Insert before the first request with strictly lower priority (FIFO among equals)."""
        for index, other in enumerate(self._queue):
            if other.priority < request.priority:
                self._queue.insert(index, request)
                return
        self._queue.append(request)

    def _publish_positions(self, now: float) -> None:
        order = self._processing_order(now)
        self._effects.positions({r.id: i for i, r in enumerate(order, start=1)})

    def _grant(self, request: Request, now: float) -> None:
        self._waiting.pop(request.id, None)
        model = request.model
        if self._effects.grant(request):
            self._granted[request.id] = model
            self._in_flight[model] = self._in_flight.get(model, 0) + 1
            self._last_used[model] = now
            self._idle_since.pop(model, None)
        else:
            self._release(model)

    def _fail(self, request: Request, error: RoutingError) -> None:
        if self._waiting.pop(request.id, None) is not None:
            self._release(request.model)
        self._effects.reject(request, error)

    def _release(self, model: str) -> None:
        left = self._reserved[model] - 1
        if left > 0:
            self._reserved[model] = left
        else:
            del self._reserved[model]

    def _cancel_swap_of(self, target: str, make_error: Callable[[str], RoutingError]) -> None:
        swap = self._active.pop(target, None)
        if swap is None:
            return
        self._changed()
        self._effects.cancel_swap(target)
        for waiter in swap.waiters:
            self._fail(waiter, make_error(target))

    def _mark_idle(self, model: str, now: float) -> None:
        """Start the ttl clock if the model is ready, unused and has a ttl."""
        rules = self.rules.get(model)
        if (
            rules is not None
            and rules.ttl > 0
            and self._view.get(model) == "ready"
            and model not in self._in_flight
            and model not in self._active
        ):
            self._idle_since.setdefault(model, now)

    def _may_expire(self, model: str) -> bool:
        if model in self._in_flight or model in self._active:
            return False
        if any(model in swap.evict for swap in self._active.values()):
            return False
        return not any(r.model == model for r in self._queue)
