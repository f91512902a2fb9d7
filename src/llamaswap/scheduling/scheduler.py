"""The sans-IO scheduler: every routing decision, with no I/O, no clock and no awaits.

The router actor feeds it events (a request, a cancel, a finished request, a process's
announced state change, a clock tick, an unload, a reload, a shutdown), each stamped
with the current time, and it acts through a small `Effects` interface (its syscall
table, documented method by method). Because it is plain synchronous code, Hypothesis
drives it directly, together with the real process cores (`llamaswap.verification`).

Rules:

1. What the scheduler knows of a process is what the process announced
   (`process_changed`), nothing predicted. Beside it the scheduler keeps only its own
   commitments: the swaps it decided, how many commands it sent each process, and the
   models it told to stop and has not yet heard at rest (`leaving`).
2. Every announcement says how many commands the process had handled. One that does
   not count every command sent so far was on its way before the latest command
   arrived: it updates the view, but answers nothing. So a model is at rest only when
   it says so having handled everything it was sent; a start goes only to a model at
   rest; and a swap that launched its target ends on the target's first `serving`
   (grant the waiters) or `error` (fail them with the reason) after it handled the
   start.
3. The router's own lifecycle (accepting, reloading, draining, shutdown) is the machine
   generated from `spec/router.fsm.yaml`, owned here: the reload and drain protocols run
   the same in the server, the simulator and the property suite.

Decision tree for a request (llama-swap's FIFO scheduler, plus a starvation bound):
unknown model -> error; over concurrencyLimit -> 429; a swap to the same model is in
flight -> join it; serving, nothing to evict, nobody evicting it -> grant (fast path);
collides with an in-flight swap -> queue; would evict a model with requests in flight
-> queue; otherwise start a swap: stop the evictees, and once every one has announced
it stopped, start the target. Swaps with disjoint evict sets run in parallel.

Starvation bound: once a queued request has waited `max_wait` seconds, nothing new may
make it wait longer: no grant, join or swap for a model it would have to evict, and no
swap that evicts its model. It is then served as soon as the requests already in
flight on its evictees finish.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from llamaswap.fsm import RouterMachine
from llamaswap.fsm.names import (
    PROCESS_ERROR,
    PROCESS_FINAL,
    PROCESS_HOLDS_RESOURCES,
    PROCESS_SERVING,
    ROUTER_CLOSED,
    ROUTER_HOLDS,
    ProcessState,
    RouterEvent,
    RouterState,
)

from .errors import (
    BlockedByUnswappable,
    KeyTooManyRequests,
    ModelNotFound,
    ModelNotLoaded,
    ModelUnloaded,
    ReloadInProgress,
    RoutingError,
    ShuttingDown,
    SwapFailed,
    TooManyRequests,
    Unschedulable,
)
from .pinning import PinnedInTheWay
from .policies import CannotFit, Policy, Resources, Usage


@dataclass(frozen=True)
class ModelRules:
    """The per-model settings the scheduler needs."""

    limit: int = 10
    priority: int = 0
    ttl: float = 0.0  # idle seconds before unload; 0 = never
    swappable: bool = True  # False: never evicted to make room, no ttl (llama-swap #1127)


@dataclass(eq=False)
class Request:
    """One admitted request, identified by `id` (compared by identity).

    `may_load=False` (llama-swap's upstream.ignorePaths) is served only by a model that
    is ready and staying; it never starts, joins or queues for a swap.

    `keep_alive` (Ollama's `keep_alive`, LM Studio's `ttl`) sets the model's idle time
    from the end of this request: seconds, 0 = unload once idle, negative = never;
    None = the model's configured ttl.
    """

    id: int
    model: str
    arrival: float
    priority: int = 0
    may_load: bool = True
    keep_alive: float | None = None
    key: str = ""  # the API key's name ("" without keys): its own limit, its turn


@dataclass
class Swap:
    """A swap in flight: `evict` is being stopped, then `target` started (`launched`)."""

    target: str
    evict: tuple[str, ...]
    waiters: list[Request] = field(default_factory=list)
    started: float = 0.0
    launched: bool = False  # the target was sent its start
    start_seq: int = 0  # the number of that start among the commands the target got
    # measured capacity (`Probing`): what the last probe said, and the wait for memory
    probing: bool = False  # a probe is under way
    fits: bool = False  # the probe said the target fits (or could not tell)
    free_before: Mapping[str, float] | None = None
    recover_until: float | None = None  # give up waiting for memory to come back then
    retry_at: float | None = None  # probe again then


@dataclass(frozen=True)
class Probing:
    """Measured capacity under `fit`: before a start the runtime measures what is free
    (the `probe` effect, answered by `probed`), and the scheduler evicts more idle
    models, or waits a while for memory to come back, until the target fits."""

    resources: Resources  # declared capacity and needs
    names: frozenset[str]  # the resources that have a probe
    recovery: float = 10.0  # seconds to wait for memory to come back after stops
    retry: float = 0.5  # seconds between probes while waiting


def _seniority(request: Request) -> tuple[float, int]:
    """Order among starving requests: oldest first, then the earlier id."""
    return (request.arrival, request.id)


def _taking_turns(queue: list[Request]) -> list[Request]:
    """`queue` (in priority order) with the keys of each priority taking turns: the first
    request of every key in order of first arrival, then every key's second, and so on.
    Without keys (or with one) this is the queue itself."""
    if len({r.key for r in queue}) < 2:
        return queue
    ordered: list[Request] = []
    for _, same_priority in itertools.groupby(queue, key=lambda r: r.priority):
        turns: dict[str, list[Request]] = {}
        for request in same_priority:
            turns.setdefault(request.key, []).append(request)
        for round_ in itertools.zip_longest(*turns.values()):
            ordered.extend(r for r in round_ if r is not None)
    return ordered


class Effects(Protocol):
    """How the scheduler acts on the world. Every call returns at once and never calls
    back into the scheduler; what the world does in answer arrives later as events."""

    def grant(self, request: Request) -> bool:
        """Hand the model to the caller. True: the caller took it, so a `finish` will
        come. False: the caller had already left, nothing is in flight."""
        ...

    def reject(self, request: Request, error: RoutingError) -> None:
        """Answer the caller with `error` (a caller that left never hears it)."""
        ...

    def start(self, model: str, reason: str) -> None:
        """Send the model's process a start; its announcements come back through
        `process_changed` (on to serving, or to an error state with the reason)."""
        ...

    def stop(self, model: str, reason: str, grace: float | None) -> None:
        """Send the model's process a stop (`grace` None: its unloadTimeout); it
        announces when it no longer holds resources."""
        ...

    def shut_down(self, model: str, reason: str) -> None:
        """Send the model's process its shutdown: it ends in its final state and never
        starts again (a reload then replaces it, see `replace`)."""
        ...

    def revoke(self, model: str, reason: str) -> None:
        """Cut every request in flight on `model` now; each still `finish`es later."""
        ...

    def replace(self, models: tuple[str, ...]) -> None:
        """A reload's old processes have all ended: create new, stopped processes for
        `models` (changed or added) from the new config before anything starts them."""
        ...

    def positions(self, positions: Mapping[int, int]) -> None:
        """Queue positions (request id -> 1-based) after the queue changed."""
        ...

    def swap_began(self, target: str, evict: tuple[str, ...]) -> None:
        """For observers: a swap to `target` was decided, stopping `evict` first."""
        ...

    def swap_ended(self, target: str, error: str | None) -> None:
        """For observers: that swap ended, the target serving (`error` None) or not."""
        ...

    def probe(self, model: str) -> None:
        """Measure what is free of the probed resources (for `model`'s start, or to
        learn what it uses once ready); answered later by `probed`."""
        ...

    def learned(self, model: str, amounts: Mapping[str, float]) -> None:
        """For observers: `model` was measured to use `amounts` (from now on its need is
        the larger of this and what it declares)."""
        ...


class Scheduler:
    """Queue, in-flight counts, swaps, the router's lifecycle and the decision tree."""

    _router_state: str  # written by the router machine itself (its state_field)

    def __init__(
        self,
        rules: Mapping[str, ModelRules],
        policy: Policy,
        effects: Effects,
        *,
        max_wait: float = 60.0,
        listeners: Sequence[Any] = (),
        probing: Probing | None = None,
        key_limits: Mapping[str, int] | None = None,
    ) -> None:
        self.rules = dict(rules)
        self.policy = policy
        self.max_wait = max_wait
        self.probing = probing
        self.key_limits = dict(key_limits or {})  # requests in flight or waiting, per key
        self._key_of: dict[int, str] = {}  # admitted requests that carry a key
        self._key_reserved: dict[str, int] = {}
        self._learned: dict[str, dict[str, float]] = {}  # measured needs (probes)
        self._learning: dict[str, Mapping[str, float]] = {}  # ready, free before its start
        self._effects = effects
        self._view: dict[str, ProcessState] = dict.fromkeys(self.rules, ProcessState.STOPPED)
        self._leaving: set[str] = set()  # told to stop; not yet announced at rest
        self._sent: dict[str, int] = {}  # commands sent to each process
        self._heard: dict[str, int] = {}  # the most commands a process said it handled
        self._rested: dict[str, int] = {}  # ... when last heard not holding resources
        self._active: dict[str, Swap] = {}
        self._queue: list[Request] = []
        self._waiting: dict[int, Request] = {}  # admitted, not yet granted
        self._granted: dict[int, str] = {}  # request id -> model, while in flight
        self._in_flight: dict[str, int] = {}  # only models with requests in flight
        self._reserved: dict[str, int] = {}  # queued + waiting + in flight, per model
        self._last_used: dict[str, float] = {}
        self._idle_since: dict[str, float] = {}
        self._keep_alive: dict[str, float] = {}  # per model, from its last finished request
        self._granted_keep_alive: dict[int, float] = {}  # in flight, asking for a keep-alive
        self._running: frozenset[str] | None = None  # cache of running(); see _changed()
        # a reload under way: requests that arrived meanwhile, the processes being
        # replaced, and the config that takes over once they have ended
        self._held: list[Request] = []
        self._retiring: set[str] = set()
        self._next: tuple[dict[str, ModelRules], Policy, tuple[str, ...]] | None = None
        # live views: the policies read them without copies
        self._usage = Usage(
            last_used=self._last_used, busy=self._in_flight.keys(), learned=self._learned
        )
        self._machine = RouterMachine(
            model=self, state_field="_router_state", listeners=list(listeners)
        )

    # -- read-only views (for snapshots, metrics and tests) -----------------------------

    @property
    def state(self) -> RouterState:
        """The router's lifecycle state (spec/router.fsm.yaml)."""
        return RouterState(self._router_state)

    def state_of(self, model: str) -> ProcessState:
        """The model's state as its process last announced it."""
        return self._view.get(model, ProcessState.STOPPED)

    def leaving(self) -> frozenset[str]:
        return frozenset(self._leaving)

    def in_flight(self, model: str) -> int:
        return self._in_flight.get(model, 0)

    def in_flight_counts(self) -> dict[str, int]:
        """Requests in flight per model (only models that have some)."""
        return dict(self._in_flight)

    def queued(self) -> list[Request]:
        return list(self._queue) if self._queue else []

    def held(self) -> list[Request]:
        """Requests that arrived during a reload, admitted once it is done."""
        return list(self._held)

    def active_swaps(self) -> dict[str, Swap]:
        return dict(self._active) if self._active else {}

    def waiting_count(self) -> int:
        return len(self._waiting) + len(self._held)

    def granted_count(self) -> int:
        return len(self._granted)

    def running(self) -> frozenset[str]:
        """Models that hold resources or may: announced so, a swap target, or told to stop
        and not yet heard at rest (a start may still be on its way to them)."""
        if self._running is None:
            running = {m for m, state in self._view.items() if state in PROCESS_HOLDS_RESOURCES}
            self._running = frozenset(running | self._active.keys() | self._leaving)
        return self._running

    def marks(self, models: Iterable[str]) -> dict[str, int]:
        """The number of commands sent to each of `models` so far (for `rested`)."""
        return {m: self._sent.get(m, 0) for m in models}

    def rested(self, marks: Mapping[str, int]) -> bool:
        """Has each model been heard at rest after handling its first `marks[m]`
        commands? (An unload is done, even if a later request started it again.)"""
        return all(self._rested.get(m, 0) >= mark for m, mark in marks.items())

    def idle_deadline(self, model: str) -> tuple[float | None, float | None]:
        """(idle since, idle limit) of `model`: since None while it is not idle (in use,
        loading, stopped); limit None when it never unloads by itself."""
        return self._idle_since.get(model), self._limit_of(model)

    def next_deadline(self) -> float | None:
        """When `tick` should be called next (the earliest idle expiry), if ever."""
        deadlines = [since + self._idle_limit(m) for m, since in self._idle_since.items()]
        deadlines += [s.retry_at for s in self._active.values() if s.retry_at is not None]
        return min(deadlines) if deadlines else None

    def _idle_limit(self, model: str) -> float:
        """Idle seconds before `model` unloads; only asked for models with a limit."""
        limit = self._limit_of(model)
        assert limit is not None
        return limit

    def _limit_of(self, model: str) -> float | None:
        """The last finished request's keep-alive (negative: never), else the configured
        ttl (0: never); a model that is not swappable has no ttl of its own."""
        keep_alive = self._keep_alive.get(model)
        if keep_alive is not None:
            return None if keep_alive < 0 else keep_alive
        rules = self.rules.get(model)
        if rules is None or rules.ttl <= 0 or not rules.swappable:
            return None
        return rules.ttl

    def _changed(self) -> None:
        """Call after any change to the process view or the active swaps."""
        self._running = None

    def _staying(self) -> frozenset[str]:
        """Running models that will still run once the stops under way complete."""
        return self.running() - (self._leaving - self._active.keys())

    def _at_rest(self, model: str) -> bool:
        """Announced not holding resources after handling every command sent to it."""
        return (
            model not in self._leaving
            and self._heard.get(model, 0) >= self._sent.get(model, 0)
            and self.state_of(model) not in PROCESS_HOLDS_RESOURCES
        )

    def _command(self, model: str) -> int:
        """Count a command about to be sent to `model`'s process; its number."""
        sent = self._sent[model] = self._sent.get(model, 0) + 1
        return sent

    # -- events: requests ---------------------------------------------------------------------

    def submit(self, request: Request, now: float) -> None:
        """A new request: admit it (or reject it) and decide."""
        state = self._router_state
        if state in ROUTER_HOLDS:
            self._held.append(request)
            return
        model = request.model
        if state in ROUTER_CLOSED:
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
        key = request.key
        if key:
            limit = self.key_limits.get(key, 0)
            if limit and self._key_reserved.get(key, 0) >= limit:
                self._effects.reject(request, KeyTooManyRequests(key, limit))
                return
            self._key_of[request.id] = key
            self._key_reserved[key] = self._key_reserved.get(key, 0) + 1
        request.priority = rules.priority
        self._reserved[model] = reserved + 1
        self._waiting[request.id] = request
        if not self._place(request, now):
            self._enqueue(request)
            self._publish_positions(now)

    def cancel(self, request_id: int, now: float) -> None:
        """The caller left before it was granted: forget it; it never triggers a load."""
        held = [r for r in self._held if r.id == request_id]
        if held:
            self._held.remove(held[0])
            return
        request = self._waiting.pop(request_id, None)
        if request is None:
            return
        swap = self._active.get(request.model)
        if swap is not None and request in swap.waiters:
            swap.waiters.remove(request)
        elif request in self._queue:
            self._queue.remove(request)
        self._release(request.model, request.id)
        self._drain(now)

    def finish(self, request_id: int, now: float) -> None:
        """A granted request finished (successfully or not)."""
        model = self._granted.pop(request_id, None)
        if model is None:
            return
        keep_alive = self._granted_keep_alive.pop(request_id, None)
        if keep_alive is None:
            self._keep_alive.pop(model, None)
        else:
            self._keep_alive[model] = keep_alive
        remaining = self._in_flight[model] - 1
        self._release(model, request_id)
        self._last_used[model] = now
        if remaining > 0:
            self._in_flight[model] = remaining
        else:
            del self._in_flight[model]
            self._mark_idle(model, now)
            self._drain(now)

    # -- events: processes and time ---------------------------------------------------------

    def process_changed(
        self, model: str, new: ProcessState, now: float, reason: str = "", handled: int = 0
    ) -> None:
        """A process announced its state (a change with its reason, or an acknowledged
        command that changed nothing), having handled `handled` commands."""
        old = self._view.get(model)
        if old is None:
            return  # not a process of this scheduler (any more)
        self._view[model] = new
        heard = self._heard[model] = max(self._heard.get(model, 0), handled)
        current = heard >= self._sent.get(model, 0)
        self._changed()
        if new not in PROCESS_HOLDS_RESOURCES:
            self._rested[model] = heard
            if current:
                self._leaving.discard(model)
            self._keep_alive.pop(model, None)
        if old in PROCESS_SERVING and new not in PROCESS_SERVING and model in self._in_flight:
            self._effects.revoke(model, reason or f"{model} is {new}")
        if new in PROCESS_SERVING:
            self._mark_idle(model, now)
        else:
            self._idle_since.pop(model, None)
        swap = self._active.get(model)
        if swap is not None and swap.launched and handled >= swap.start_seq:
            if new in PROCESS_SERVING:
                if swap.free_before is not None:  # measure what it took
                    self._learning[model] = swap.free_before
                    self._effects.probe(model)
                self._complete(swap, None, now)
            elif new in PROCESS_ERROR:
                self._complete(swap, f"[{model}] {reason or new}", now)
        self._advance_swaps(now)
        self._settle_lifecycle(now)
        self._drain(now)

    def tick(self, now: float) -> None:
        """Time passed: stop models idle for longer than their ttl."""
        expired = [
            m
            for m, since in self._idle_since.items()
            if now >= since + self._idle_limit(m) and self._may_expire(m)
        ]
        for model in sorted(expired):
            del self._idle_since[model]
            self._stop(model, "ttl")
        if expired:
            self._changed()
        for swap in list(self._active.values()):
            if swap.retry_at is not None and now >= swap.retry_at:
                swap.retry_at = None
                self._advance(swap, now)

    # -- events: operators ---------------------------------------------------------------------

    def unload(
        self, models: Iterable[str], now: float, grace: float | None = None
    ) -> tuple[str, ...]:
        """Fail everyone waiting for `models`, cut their requests, stop them; return the
        known ones (`rested(marks(...))` tells when they have stopped).

        llama-swap #125: an unload does not wait for requests in flight, it cuts them.
        """
        targets = sorted(set(models) & self.rules.keys())
        for model in targets:
            launched = self._cancel_swap_of(model, ModelUnloaded)
            for request in [r for r in self._queue if r.model == model]:
                self._queue.remove(request)
                self._fail(request, ModelUnloaded(model))
            if model in self._in_flight:
                self._effects.revoke(model, "model unloaded")
            self._idle_since.pop(model, None)
            self._stop(model, "unload", grace, launched=launched)
        self._changed()
        self._drain(now)
        return tuple(targets)

    def reload(
        self,
        rules: Mapping[str, ModelRules],
        policy: Policy,
        changed: Iterable[str],
        now: float,
    ) -> tuple[str, ...]:
        """Begin applying a new config; returns the models whose processes are replaced.

        The processes of changed and removed models are shut down (their requests in
        flight cut); requests waiting for a changed model keep their place and are served
        by its new process, those for a removed one fail; requests arriving meanwhile are
        held. Once every replaced process has ended, `Effects.replace` creates the new
        ones, the new rules and policy apply and the held requests are admitted in order.
        """
        if self._router_state != RouterState.ACCEPTING:
            raise ReloadInProgress(f"cannot reload while {self._router_state}")
        self._machine.send(RouterEvent.RELOAD.value)
        removed = sorted(self.rules.keys() - rules.keys())
        kept = sorted(set(changed) & self.rules.keys() & rules.keys())
        replaced = tuple(sorted([*removed, *kept]))
        self._next = (dict(rules), policy, replaced)
        for model in removed:
            self._cancel_swap_of(model, ModelUnloaded)
            for request in [r for r in self._queue if r.model == model]:
                self._queue.remove(request)
                self._fail(request, ModelUnloaded(model))
        for model in kept:
            swap = self._active.pop(model, None)
            if swap is not None:
                self._effects.swap_ended(model, "config reloaded")
                self._queue[:0] = swap.waiters  # at the front: they keep their place
        for model in replaced:
            if model in self._in_flight:
                self._effects.revoke(model, "config reloaded")
            self._idle_since.pop(model, None)
            self._leaving.add(model)
            self._command(model)
            self._effects.shut_down(model, "config reloaded")
        self._retiring = set(replaced)
        self._changed()
        self._settle_lifecycle(now)
        return replaced

    def shutdown(self, now: float) -> None:
        """Fail everyone waiting, cut every request, shut every process down; refuse
        everything from now on. The router reaches `shutdown` once every process has."""
        if self._router_state in ROUTER_CLOSED:
            return
        self._machine.send(RouterEvent.DRAIN.value)
        for request in self._held:
            self._effects.reject(request, ShuttingDown())
        self._held.clear()
        for target in list(self._active):
            self._cancel_swap_of(target, lambda _model: ShuttingDown())
        for request in list(self._queue):
            self._fail(request, ShuttingDown())
        self._queue.clear()
        self._idle_since.clear()
        for model in sorted(self._view):
            if model in self._in_flight:
                self._effects.revoke(model, "llamaswap is shutting down")
            if self._view[model] not in PROCESS_FINAL:
                self._command(model)
                self._effects.shut_down(model, "llamaswap is shutting down")
        self._changed()
        self._settle_lifecycle(now)

    def _settle_lifecycle(self, now: float) -> None:
        """Finish a reload or a drain once every process it waits for has ended."""
        state = self._router_state
        if state == RouterState.RELOADING:
            if all(self._view.get(m) in PROCESS_FINAL for m in self._retiring):
                self._finish_reload(now)
        elif state == RouterState.DRAINING and all(s in PROCESS_FINAL for s in self._view.values()):
            self._machine.send(RouterEvent.DRAINED.value)

    def _finish_reload(self, now: float) -> None:
        assert self._next is not None
        rules, policy, replaced = self._next
        self._next = None
        fresh = tuple(sorted((set(replaced) & rules.keys()) | (rules.keys() - self.rules.keys())))
        self._effects.replace(fresh)
        for model in self.rules.keys() - rules.keys():
            self._view.pop(model, None)
            self._leaving.discard(model)
            self._last_used.pop(model, None)
        for model in (self.rules.keys() - rules.keys()) | set(fresh):
            self._learned.pop(model, None)  # a changed command may need another amount
            self._learning.pop(model, None)
        for model in fresh:  # a new process: no command sent, nothing heard yet
            self._view[model] = ProcessState.STOPPED
            self._leaving.discard(model)
            self._sent.pop(model, None)
            self._heard.pop(model, None)
            self._rested.pop(model, None)
        self.rules = rules
        self.policy = policy
        self._retiring.clear()
        self._changed()
        self._machine.send(RouterEvent.RELOAD_DONE.value)
        held, self._held = self._held, []
        for request in held:
            self.submit(request, now)
        self._drain(now)

    # -- events: measured capacity -------------------------------------------------------

    def probed(self, model: str, free: Mapping[str, float] | None, now: float) -> None:
        """What the probe measured free (None: it failed; the declared figures decide)."""
        swap = self._active.get(model)
        if swap is not None and swap.probing:
            swap.probing = False
            self._after_probe(swap, free, now)
            self._drain(now)
            return
        before = self._learning.pop(model, None)
        if before is not None and free is not None:
            used = {r: max(0.0, before[r] - free[r]) for r in before.keys() & free.keys()}
            self._learned[model] = used
            self._effects.learned(model, used)

    def recall(self, needs: Mapping[str, Mapping[str, float]]) -> None:
        """What models were measured to use in an earlier run (the activity store),
        for models not measured in this one yet."""
        for model, amounts in needs.items():
            if model in self.rules and model not in self._learned:
                self._learned[model] = dict(amounts)

    def _after_probe(self, swap: Swap, free: Mapping[str, float] | None, now: float) -> None:
        """Launch if the target fits; else evict another idle model, or wait a while for
        memory to come back, or fail the swap saying what is missing."""
        probing = self.probing
        assert probing is not None
        target = swap.target
        short = self._shortfall(target, free) if free is not None else {}
        if not short:
            swap.fits, swap.free_before = True, free
            self._advance(swap, now)
            return
        if swap.recover_until is None:
            swap.recover_until = now + probing.recovery
        victim = self._idle_victim(swap)
        if victim is not None:
            swap.evict = (*swap.evict, victim)
            self._stop(victim, f"evicted for {target}: the probe says it does not fit")
            return
        if now < swap.recover_until:
            swap.retry_at = now + probing.retry
            return
        missing = "; ".join(
            f"it needs {name} {need:g}{' (as measured)' if measured else ''}, "
            f"the probe finds {free_now:g} free"
            for name, (need, free_now, measured) in sorted(short.items())
        )
        self._complete(
            swap,
            f"[{target}] does not fit: {missing}",
            now,
        )

    def _shortfall(
        self, model: str, free: Mapping[str, float]
    ) -> dict[str, tuple[float, float, bool]]:
        """Each probed resource `model` needs more of than is free: (its need, what is
        free, whether the need is a measured one larger than declared)."""
        probing = self.probing
        assert probing is not None
        learned = self._learned.get(model, {})
        short = {}
        for name in probing.names & free.keys():
            declared = probing.resources.need(model, name)
            need = max(declared, learned.get(name, 0.0))
            if need > free[name] + 1e-9:
                short[name] = (need, free[name], need > declared)
        return short

    def _idle_victim(self, swap: Swap) -> str | None:
        """The least recently used running model that may go to make room for `swap`."""
        candidates = [
            m
            for m, state in self._view.items()
            if state in PROCESS_HOLDS_RESOURCES
            and m != swap.target
            and m not in swap.evict
            and m not in self._leaving
            and m not in self._in_flight
            and m not in self._active
            and self.rules.get(m, ModelRules()).swappable
        ]
        candidates.sort(key=lambda m: (self._last_used.get(m, 0.0), m))
        return candidates[0] if candidates else None

    # -- swaps -------------------------------------------------------------------------------

    def _begin_swap(self, request: Request, evict: tuple[str, ...], now: float) -> None:
        model = request.model
        swap = self._active[model] = Swap(model, evict, [request], now)
        self._changed()
        self._effects.swap_began(model, evict)
        self._idle_since.pop(model, None)
        for evictee in evict:
            self._idle_since.pop(evictee, None)
            self._stop(evictee, f"evicted for {model}")
        self._advance(swap, now)

    def _advance_swaps(self, now: float) -> None:
        for swap in [s for s in self._active.values() if not s.launched]:
            self._advance(swap, now)

    def _advance(self, swap: Swap, now: float) -> None:
        """Once every evictee has stopped: done if the target already serves, else launch
        it once it is at rest (rule 2)."""
        if swap.launched or not all(self._at_rest(m) for m in swap.evict):
            return
        target = swap.target
        if self.state_of(target) in PROCESS_SERVING and target not in self._leaving:
            self._complete(swap, None, now)
        elif self._at_rest(target):
            if self.probing is not None and not swap.fits:
                if not swap.probing and swap.retry_at is None:
                    swap.probing = True
                    self._effects.probe(target)
                return
            swap.launched = True
            swap.start_seq = self._command(target)
            self._effects.start(target, "requested")

    def _complete(self, swap: Swap, error: str | None, now: float) -> None:
        """The swap's target is serving (error None) or failed: answer its waiters."""
        target = swap.target
        del self._active[target]
        self._changed()
        self._effects.swap_ended(target, error)
        for waiter in swap.waiters:
            if error is None:
                self._grant(waiter, now)
            else:
                self._fail(waiter, SwapFailed(error))
        if error is None:
            self._mark_idle(target, now)

    def _stop(
        self, model: str, reason: str, grace: float | None = None, *, launched: bool = False
    ) -> None:
        """Tell `model`'s process to stop if it runs (or was just launched, or failed:
        an unload clears the failure), unless it was told already; it is `leaving` until
        it announces at rest."""
        state = self.state_of(model)
        if model in self._leaving:
            return
        if launched or state in PROCESS_HOLDS_RESOURCES or state in PROCESS_ERROR:
            self._leaving.add(model)
            self._changed()
            self._command(model)
            self._effects.stop(model, reason, grace)

    def _cancel_swap_of(self, target: str, make_error: Callable[[str], RoutingError]) -> bool:
        """Drop the swap to `target`, failing its waiters; True if the target was launched."""
        swap = self._active.pop(target, None)
        if swap is None:
            return False
        self._changed()
        self._effects.swap_ended(target, str(make_error(target)))
        for waiter in swap.waiters:
            self._fail(waiter, make_error(target))
        return swap.launched

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
        except PinnedInTheWay as exc:
            self._fail(request, BlockedByUnswappable(str(exc)))
            return True
        except CannotFit as exc:
            self._fail(request, Unschedulable(str(exc)))
            return True
        if blockers and self._delays(model, evict, blockers):
            return False
        if self._collides(model, evict):
            return False
        if not evict and self.state_of(model) in PROCESS_SERVING and model not in self._leaving:
            self._grant(request, now)
            return True
        if self._any_busy(evict):
            return False
        self._begin_swap(request, evict, now)
        return True

    def _place_without_loading(self, request: Request, now: float) -> None:
        """Grant now if the model is ready and nothing is taking it away, else reject.

        Never queued: by the time it left the queue its model could be gone, and then
        serving it would mean loading it.
        """
        model = request.model
        blockers = self._blockers(request, now)
        loaded = (
            self.state_of(model) in PROCESS_SERVING
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
        """Starving requests first (oldest first), then the queue's priority/FIFO order,
        taking turns between API keys within each priority (fair share)."""
        starving = sorted(
            (r for r in self._queue if now >= r.arrival + self.max_wait), key=_seniority
        )
        rest = [r for r in self._queue if r not in starving]
        return starving + _taking_turns(rest)

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
            if request.keep_alive is not None:
                self._granted_keep_alive[request.id] = request.keep_alive
            self._in_flight[model] = self._in_flight.get(model, 0) + 1
            self._last_used[model] = now
            self._idle_since.pop(model, None)
        else:
            self._release(model, request.id)

    def _fail(self, request: Request, error: RoutingError) -> None:
        if self._waiting.pop(request.id, None) is not None:
            self._release(request.model, request.id)
        self._effects.reject(request, error)

    def _release(self, model: str, request_id: int) -> None:
        """An admitted request is done (finished, failed, left): free its places."""
        left = self._reserved[model] - 1
        if left > 0:
            self._reserved[model] = left
        else:
            del self._reserved[model]
        key = self._key_of.pop(request_id, None)
        if key is not None:
            remaining = self._key_reserved[key] - 1
            if remaining > 0:
                self._key_reserved[key] = remaining
            else:
                del self._key_reserved[key]

    def _mark_idle(self, model: str, now: float) -> None:
        """Start the idle clock if the model is serving, unused and has an idle limit."""
        if (
            self._limit_of(model) is not None
            and self.state_of(model) in PROCESS_SERVING
            and model not in self._leaving
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
