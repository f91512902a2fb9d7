"""A recording Effects implementation for driving the pure scheduler in tests."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from llamaswap.fsm.names import ProcessState
from llamaswap.scheduling import (
    Group,
    GroupPolicy,
    ModelRules,
    Policy,
    Probing,
    Request,
    RoutingError,
    Scheduler,
)


@dataclass
class Recorder:
    """Remembers every effect; callers listed in `gone` have left before their grant."""

    grants: list[int] = field(default_factory=list)
    rejects: list[tuple[int, RoutingError]] = field(default_factory=list)
    swaps: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    ended_swaps: list[tuple[str, str | None]] = field(default_factory=list)
    starts: list[str] = field(default_factory=list)
    stops: list[tuple[str, str]] = field(default_factory=list)
    graces: list[float | None] = field(default_factory=list)
    shut_downs: list[str] = field(default_factory=list)
    revokes: list[tuple[str, str]] = field(default_factory=list)
    replaced: list[tuple[str, ...]] = field(default_factory=list)
    last_positions: dict[int, int] = field(default_factory=dict)
    gone: set[int] = field(default_factory=set)
    granted_requests: list[Request] = field(default_factory=list)
    commands: Counter[str] = field(default_factory=Counter)  # sent to each process
    probes: list[str] = field(default_factory=list)
    measured: dict[str, dict[str, float]] = field(default_factory=dict)

    def grant(self, request: Request) -> bool:
        if request.id in self.gone:
            return False
        self.grants.append(request.id)
        self.granted_requests.append(request)
        return True

    def reject(self, request: Request, error: RoutingError) -> None:
        self.rejects.append((request.id, error))

    def start(self, model: str, reason: str) -> None:
        self.starts.append(model)
        self.commands[model] += 1

    def stop(self, model: str, reason: str, grace: float | None) -> None:
        self.stops.append((model, reason))
        self.graces.append(grace)
        self.commands[model] += 1

    def shut_down(self, model: str, reason: str) -> None:
        self.shut_downs.append(model)
        self.commands[model] += 1

    def revoke(self, model: str, reason: str) -> None:
        self.revokes.append((model, reason))

    def replace(self, models: tuple[str, ...]) -> None:
        self.replaced.append(models)

    def positions(self, positions: Mapping[int, int]) -> None:
        self.last_positions = dict(positions)

    def swap_began(self, target: str, evict: tuple[str, ...]) -> None:
        self.swaps.append((target, evict))

    def swap_ended(self, target: str, error: str | None) -> None:
        self.ended_swaps.append((target, error))

    def probe(self, model: str) -> None:
        self.probes.append(model)

    def learned(self, model: str, amounts: Mapping[str, float]) -> None:
        self.measured[model] = dict(amounts)

    def rejected_ids(self) -> list[int]:
        return [rid for rid, _ in self.rejects]

    def stopped_models(self) -> list[str]:
        return [model for model, _ in self.stops]


class Harness:
    """A scheduler plus helpers that play the runtime's part (processes, clock)."""

    def __init__(
        self,
        models: Iterable[str] | Mapping[str, ModelRules],
        policy: Policy | None = None,
        max_wait: float = 60.0,
        probing: Probing | None = None,
    ) -> None:
        rules = models if isinstance(models, Mapping) else {m: ModelRules() for m in models}
        policy = policy or GroupPolicy([Group("(default)", tuple(sorted(rules)))])
        self.effects = Recorder()
        self.scheduler = Scheduler(rules, policy, self.effects, max_wait=max_wait, probing=probing)
        self.now = 0.0
        self._next_id = 0

    def request(self, model: str, *, may_load: bool = True) -> int:
        self._next_id += 1
        request = Request(self._next_id, model, self.now, may_load=may_load)
        self.scheduler.submit(request, self.now)
        return self._next_id

    def announce(
        self, model: str, state: ProcessState, reason: str = "", handled: int | None = None
    ) -> None:
        """The process of `model` announces `state`; by default having handled every
        command sent so far (`handled` smaller: an announcement that was on its way)."""
        if handled is None:
            handled = self.effects.commands[model]
        self.scheduler.process_changed(model, state, self.now, reason, handled)

    def ready(self, *models: str) -> None:
        for model in models:
            self.announce(model, ProcessState.READY)

    def stopped(self, *models: str) -> None:
        for model in models:
            self.announce(model, ProcessState.STOPPED)

    def complete_swap(self, target: str, error: str | None = None) -> None:
        """Play the processes of a swap: evictees stop, then the target becomes ready
        (or fails with `error`)."""
        swap = self.scheduler.active_swaps()[target]
        self.stopped(*swap.evict)
        assert self.scheduler.active_swaps()[target].launched, "the target was never started"
        if error is None:
            self.ready(target)
        else:
            self.announce(target, ProcessState.FAILED, error)

    def finish(self, *request_ids: int) -> None:
        for rid in request_ids:
            self.scheduler.finish(rid, self.now)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.scheduler.tick(self.now)
