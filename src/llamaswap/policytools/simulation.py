"""Discrete-event simulation of the router: the real scheduler on a virtual clock.

No processes and no sleeps: a heap of timed events stands in for the runtime. Each
model runs the real `ProcessCore` (the machine generated from spec/process.fsm.yaml):
a spawn succeeds at once, the health check passes `load` seconds later and a stop
takes `stop` seconds, and the cores' announcements reach the scheduler as the process
actors' do in the live router. A granted request holds its model for its `duration`;
ttl unloads happen at `Scheduler.next_deadline()`.

Effects only schedule events; the scheduler is never re-entered from inside one of
its own calls. Events at the same instant run in the order they were scheduled, so a
run is a pure function of its inputs. `simulate()` is the public entry point (the
live router's tests compare their swap count with it); `run_simulation()` takes a
ready-made policy, for `llamaswap check`'s replays.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from llamaswap.config import Config
from llamaswap.fsm.names import PROCESS_HOLDS_RESOURCES, ProcessState
from llamaswap.lifecycle.ondemand import OnDemand
from llamaswap.lifecycle.process import (
    Acknowledge,
    Announce,
    Exited,
    Healthy,
    Message,
    PollHealth,
    ProcessCore,
    RestoreSlots,
    SaveSlots,
    ShutDown,
    SlotsRestored,
    SlotsSaved,
    Spawn,
    Spawned,
    Start,
    Stop,
    Terminate,
)
from llamaswap.scheduling import (
    Effects,
    ModelRules,
    Policy,
    Request,
    RoutingError,
    Scheduler,
)
from llamaswap.scheduling.from_config import build_policy, key_limits, model_rules, resources_of

from .metrics import WaitSummary
from .trace import TraceRequest

POLICIES = ("group", "matrix", "fit")
DEFAULT_LOAD_SECONDS = 10.0
DEFAULT_STOP_SECONDS = 1.0
EVENTS_PER_REQUEST_LIMIT = 200  # a run that needs more has stopped settling: a bug


class PolicyUnavailable(Exception):
    """The config cannot run the requested policy (no matrix, no resources...)."""


@dataclass(frozen=True)
class Seconds:
    """A duration per model: `per_model` where given, else `default`."""

    default: float
    per_model: Mapping[str, float] = field(default_factory=dict)

    def of(self, model: str) -> float:
        return self.per_model.get(model, self.default)

    @classmethod
    def coerce(cls, value: float | Mapping[str, float] | Seconds, default: float) -> Seconds:
        """A number is the default for every model; a mapping overrides `default` per model."""
        if isinstance(value, Seconds):
            return value
        if isinstance(value, int | float):
            return cls(float(value))
        return cls(default, dict(value))


@dataclass
class RequestOutcome:
    """What happened to one trace request."""

    id: int
    model: str
    arrival: float
    duration: float
    granted: float | None = None
    finished: float | None = None
    error: str = ""  # why it was rejected ("" when served or unresolved)
    code: str = ""
    key: str = ""  # the API key's name it came with ("" for none)

    @property
    def wait(self) -> float | None:
        return None if self.granted is None else self.granted - self.arrival

    @property
    def resolved(self) -> bool:
        return self.granted is not None or bool(self.error)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "arrival": self.arrival,
            "duration": self.duration,
            "granted": self.granted,
            "finished": self.finished,
            "wait": self.wait,
            "error": self.error or None,
        }


@dataclass(frozen=True)
class Span:
    """A model spent [start, end) in `state` (any state but stopped)."""

    model: str
    state: str
    start: float
    end: float


@dataclass
class SimulationResult:
    """Everything one run measured. `swaps` counts swaps the scheduler started."""

    policy: str
    max_wait: float
    swaps: int = 0
    evictions: int = 0
    loading_seconds: float = 0.0
    stopping_seconds: float = 0.0
    max_queue: int = 0
    end: float = 0.0  # when the last request finished or was rejected
    requests: list[RequestOutcome] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    loads: dict[str, int] = field(default_factory=dict)  # model -> times loaded
    co_running_sets: set[frozenset[str]] = field(default_factory=set)

    def models(self) -> list[str]:
        return sorted({r.model for r in self.requests})

    def of_model(self, model: str | None) -> list[RequestOutcome]:
        return [r for r in self.requests if model is None or r.model == model]

    def waits(self, model: str | None = None) -> WaitSummary:
        return WaitSummary.of(r.wait for r in self.of_model(model) if r.wait is not None)

    def served(self, model: str | None = None) -> int:
        return sum(1 for r in self.of_model(model) if r.granted is not None)

    def rejected(self, model: str | None = None) -> int:
        return sum(1 for r in self.of_model(model) if r.error)

    def rejections(self) -> dict[str, int]:
        """How many requests were rejected, by error code (concurrency_limit, not_found...)."""
        counts: dict[str, int] = {}
        for outcome in self.requests:
            if outcome.error:
                counts[outcome.code] = counts.get(outcome.code, 0) + 1
        return dict(sorted(counts.items()))

    def unresolved(self, model: str | None = None) -> list[RequestOutcome]:
        """Requests neither served nor rejected when the run settled (a liveness bug)."""
        return [r for r in self.of_model(model) if not r.resolved]

    def starved(self, model: str | None = None) -> list[RequestOutcome]:
        """Requests that waited longer than the starvation bound (maxWaitSeconds)."""
        return [
            r
            for r in self.of_model(model)
            if (r.wait is not None and r.wait > self.max_wait)
            or (not r.resolved and self.end - r.arrival > self.max_wait)
        ]


def policy_for(config: Config, name: str | None = None, *, guard: bool = True) -> Policy:
    """The server's policy for `config`, with `routing.router` replaced by `name` if given."""
    name = name or config.routing.router
    if name not in POLICIES:
        raise PolicyUnavailable(f"unknown policy {name!r} (valid: {', '.join(POLICIES)})")
    if name == "matrix" and config.routing.matrix is None:
        raise PolicyUnavailable("the matrix policy needs a matrix in the config")
    if name == "fit" and resources_of(config) is None:
        raise PolicyUnavailable("the fit policy needs top-level resources in the config")
    routing = config.routing.model_copy(update={"router": name})
    return build_policy(config.model_copy(update={"routing": routing}), guard=guard)


def simulate(
    config: Config,
    requests: Iterable[TraceRequest],
    *,
    load_seconds: float | Mapping[str, float] | Seconds = DEFAULT_LOAD_SECONDS,
    stop_seconds: float | Mapping[str, float] | Seconds = DEFAULT_STOP_SECONDS,
    policy: str | None = None,
) -> SimulationResult:
    """Replay `requests` against the scheduler and policy the server would build.

    `policy` overrides `routing.router` (raises `PolicyUnavailable` when the config
    cannot run it). Model names in the trace may be aliases. A mapping of seconds
    gives per-model values; models it leaves out use the default.
    """
    chosen = policy_for(config, policy)
    resolved = [replace(r, model=config.resolve(r.model) or r.model) for r in requests]
    return run_simulation(
        model_rules(config),
        chosen,
        resolved,
        load=Seconds.coerce(load_seconds, DEFAULT_LOAD_SECONDS),
        stop=Seconds.coerce(stop_seconds, DEFAULT_STOP_SECONDS),
        max_wait=config.routing.max_wait_seconds,
        name=policy or config.routing.router,
        key_limits=key_limits(config),
    )


def run_simulation(
    rules: Mapping[str, ModelRules],
    policy: Policy,
    requests: Sequence[TraceRequest],
    *,
    load: Seconds,
    stop: Seconds,
    max_wait: float = 60.0,
    name: str = "",
    key_limits: Mapping[str, int] | None = None,
) -> SimulationResult:
    """Replay `requests` (sorted by arrival here; ties keep their order) with `policy`."""
    runtime = _VirtualRuntime(
        rules, policy, load, stop, max_wait, name or policy.name, key_limits or {}
    )
    return runtime.run(sorted(requests, key=lambda r: r.t))


Action = Callable[[], None]


class _VirtualRuntime(Effects):
    """The scheduler's Effects on a virtual clock: every effect becomes timed events."""

    def __init__(
        self,
        rules: Mapping[str, ModelRules],
        policy: Policy,
        load: Seconds,
        stop: Seconds,
        max_wait: float,
        name: str,
        key_limits: Mapping[str, int],
    ) -> None:
        self.scheduler = Scheduler(rules, policy, self, max_wait=max_wait, key_limits=key_limits)
        self.load = load
        self.stop_time = stop
        self.now = 0.0
        self.result = SimulationResult(policy=name, max_wait=max_wait)
        self._heap: list[tuple[float, int, bool, Action]] = []
        self._seq = itertools.count()
        self._cores: dict[str, ProcessCore] = OnDemand(ProcessCore)  # made on first use
        self._since: dict[str, float] = {}
        self._ticks: set[float] = set()
        self._outcomes: dict[int, RequestOutcome] = {}

    # -- the event loop ---------------------------------------------------------------

    def _at(self, when: float, action: Action, *, tick: bool = False) -> None:
        heapq.heappush(self._heap, (max(when, self.now), next(self._seq), tick, action))

    def run(self, requests: Sequence[TraceRequest]) -> SimulationResult:
        for rid, request in enumerate(requests, start=1):
            outcome = RequestOutcome(
                rid, request.model, float(request.t), float(request.duration), key=request.key
            )
            self._outcomes[rid] = outcome
            self.result.requests.append(outcome)
            self._at(request.t, self._arrival(outcome))
        budget = EVENTS_PER_REQUEST_LIMIT * (len(requests) + len(self.scheduler.rules) + 1)
        while self._heap:
            budget -= 1
            if budget < 0:
                raise RuntimeError("the simulation did not settle (scheduler keeps producing work)")
            when, _, was_tick, action = heapq.heappop(self._heap)
            self.now = when
            action()
            self._note_running()
            self._schedule_tick(after_tick=was_tick)
        for model, core in self._cores.items():
            if core.state is not ProcessState.STOPPED:
                self._close_span(model, core.state)
        return self.result

    def _schedule_tick(self, *, after_tick: bool) -> None:
        """Tick at the next ttl deadline; a tick that expired nothing waits for news."""
        deadline = self.scheduler.next_deadline()
        if deadline is None:
            return
        when = max(deadline, self.now)
        if (after_tick and when <= self.now) or when in self._ticks:
            return
        self._ticks.add(when)
        self._at(when, lambda: self._tick(when), tick=True)

    def _tick(self, when: float) -> None:
        self._ticks.discard(when)
        self.scheduler.tick(self.now)

    def _note_running(self) -> None:
        running = frozenset(m for m, c in self._cores.items() if c.state in PROCESS_HOLDS_RESOURCES)
        if len(running) > 1:
            self.result.co_running_sets.add(running)

    # -- requests -----------------------------------------------------------------------

    def _arrival(self, outcome: RequestOutcome) -> Action:
        def arrive() -> None:
            request = Request(outcome.id, outcome.model, self.now, key=outcome.key)
            self.scheduler.submit(request, self.now)

        return arrive

    def _finish(self, outcome: RequestOutcome) -> None:
        outcome.finished = self.now
        self.result.end = max(self.result.end, self.now)
        self.scheduler.finish(outcome.id, self.now)

    # -- Effects ------------------------------------------------------------------------

    def grant(self, request: Request) -> bool:
        outcome = self._outcomes[request.id]
        outcome.granted = self.now
        self._at(self.now + outcome.duration, lambda: self._finish(outcome))
        return True

    def reject(self, request: Request, error: RoutingError) -> None:
        outcome = self._outcomes[request.id]
        outcome.error = str(error)
        outcome.code = error.code
        self.result.end = max(self.result.end, self.now)

    def start(self, model: str, reason: str) -> None:
        self._at(self.now, lambda: self._feed(model, Start(reason)))

    def stop(self, model: str, reason: str, grace: float | None) -> None:
        self._at(self.now, lambda: self._feed(model, Stop(grace or 0.0, reason)))

    def shut_down(self, model: str, reason: str) -> None:
        self._at(self.now, lambda: self._feed(model, ShutDown(0.0, reason)))

    def revoke(self, model: str, reason: str) -> None:
        """Simulated requests hold their model for their whole duration."""

    def replace(self, models: tuple[str, ...]) -> None:
        raise RuntimeError("the simulator does not replay config reloads")

    def positions(self, positions: Mapping[int, int]) -> None:
        self.result.max_queue = max(self.result.max_queue, len(positions))

    def swap_began(self, target: str, evict: tuple[str, ...]) -> None:
        self.result.swaps += 1
        self.result.evictions += len(evict)

    def swap_ended(self, target: str, error: str | None) -> None:
        pass

    def probe(self, model: str) -> None:
        raise AssertionError("this reasons on declared figures: nothing is probed")

    def learned(self, model: str, amounts: Mapping[str, float]) -> None:
        raise AssertionError("this reasons on declared figures: nothing is measured")

    # -- the processes: real cores, timed effects ----------------------------------------

    def _feed(self, model: str, message: Message) -> None:
        for effect in self._cores[model].handle(message):
            match effect:
                case Spawn(generation=generation):
                    self._at(self.now, partial(self._feed, model, Spawned(generation, 0)))
                case PollHealth(generation=generation):
                    seconds = self.load.of(model)
                    self.result.loading_seconds += seconds
                    self.result.loads[model] = self.result.loads.get(model, 0) + 1
                    healthy = Healthy(generation, seconds)
                    self._at(self.now + seconds, partial(self._feed, model, healthy))
                case SaveSlots(generation=generation):
                    saved = SlotsSaved(generation, "saved")
                    self._at(self.now, partial(self._feed, model, saved))
                case RestoreSlots(generation=generation):
                    restored = SlotsRestored(generation, "restored")
                    self._at(self.now, partial(self._feed, model, restored))
                case Terminate(generation=generation):
                    seconds = self.stop_time.of(model)
                    self.result.stopping_seconds += seconds
                    self._at(self.now + seconds, partial(self._feed, model, Exited(generation, 0)))
                case Announce():
                    self._announce(model, effect)
                case Acknowledge(state=state, handled=handled):
                    self._at(self.now, partial(self._hear, model, state, "", handled))

    def _announce(self, model: str, effect: Announce) -> None:
        """Keep the timeline; the scheduler hears it next, as the router's inbox delivers."""
        if effect.old is not ProcessState.STOPPED:
            self._close_span(model, effect.old)
        self._since[model] = self.now
        self._at(self.now, partial(self._hear, model, effect.new, effect.reason, effect.handled))

    def _hear(self, model: str, state: ProcessState, reason: str, handled: int) -> None:
        """The scheduler hears a process (after the event that made it, as a router would)."""
        self.scheduler.process_changed(model, state, self.now, reason, handled)

    def _close_span(self, model: str, state: ProcessState) -> None:
        start = self._since.get(model, self.now)
        if self.now > start:
            self.result.spans.append(Span(model, str(state), start, self.now))
