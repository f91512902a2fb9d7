"""Typed runtime events and a lossy fan-out bus for observers.

Actors publish what happened; logs, metrics, the UI and tests subscribe. Publishing
never blocks an actor: a subscriber that falls behind loses events (and can see how
many in `dropped`), it never slows the system down. Components that must not lose an
event (the router listening to its processes) use a direct listener instead.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from llamaswap.fsm.names import ProcessEvent, ProcessState, RouterEvent, RouterState


@dataclass(frozen=True, slots=True)
class ProcessStateChanged:
    """A process moved between lifecycle states (spec/process.fsm.yaml) on `event`.

    `handled` counts the commands the process had handled by then. A process also tells
    its router about a command it ignored, with `old == new` (`changed` is False): the
    router's scheduler needs it, observers on the bus never see it.
    """

    model: str
    old: ProcessState
    new: ProcessState
    event: ProcessEvent
    reason: str = ""
    handled: int = 0
    at: float = field(default_factory=time.time)

    @property
    def changed(self) -> bool:
        return self.old != self.new


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line an upstream (or llamaswap itself, source "proxy") wrote."""

    source: str
    text: str
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class RouterSnapshot:
    """Per-model queue and in-flight counts after a router step (for the UI and metrics)."""

    queued: dict[str, int]
    in_flight: dict[str, int]
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class SwapStarted:
    """The router decided to load `target`, stopping `evict` first."""

    target: str
    evict: tuple[str, ...]
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class SwapFinished:
    """A swap ended: `target` is ready (error empty) or failed; `seconds` from decision."""

    target: str
    seconds: float
    error: str = ""
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class RouterStateChanged:
    """The router's own lifecycle moved (spec/router.fsm.yaml)."""

    old: RouterState
    new: RouterState
    event: RouterEvent
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class ModelsConfigured:
    """A config reload finished: from now on these are the local models; `fresh` got a
    new (stopped) process, because they are new or their settings changed."""

    models: tuple[str, ...]
    fresh: tuple[str, ...] = ()
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class NeedMeasured:
    """`model` was measured (by the resource probes) to use `amounts` once ready."""

    model: str
    amounts: dict[str, float]
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class ProfileChanged:
    """An operator switched the active profile (None: no profile)."""

    active: str | None
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class RequestCapture:
    """What a request sent and got back, for `/api/captures/<id>` (only with captureBuffer).

    Headers are as they came (redacted when the store keeps them); `response_bytes`
    is how many bytes the client got, so a body cut to the capture limit can be told from
    a whole one."""

    request_headers: Mapping[str, str]
    request_body: bytes
    response_headers: Mapping[str, str]
    response_body: bytes
    response_bytes: int


@dataclass(frozen=True, slots=True)
class RequestFinished:
    """An access-log record of one proxied request (the UI's recent activity).

    `tail` is the end of the response body, kept raw: whoever wants token usage parses
    it (`llamaswap.http.usage`, `llamaswap.store.tokens`), so nothing is parsed on the
    request path. The activity store keeps the requests with `recorded` set (llama-swap's
    metered ones: model-routed POSTs, `/upstream` POSTs to a model route); `key_id` is a
    short fingerprint of the API key used (never the key), `capture` is set only when
    captures are on.
    """

    method: str
    path: str
    model: str
    status: int
    duration: float
    tail: bytes = b""
    at: float = field(default_factory=time.time)
    content_type: str = ""
    key_id: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    capture: RequestCapture | None = None
    recorded: bool = False


Listener = Callable[[Any], None]


class Subscription:
    """A subscriber's end of the bus: iterate it to receive events."""

    def __init__(self, bus: EventBus, buffer: int) -> None:
        self._bus = bus
        send, receive = anyio.create_memory_object_stream[Any](buffer)
        self._send: MemoryObjectSendStream[Any] = send
        self._receive: MemoryObjectReceiveStream[Any] = receive
        self.dropped = 0

    def offer(self, event: Any) -> None:
        try:
            self._send.send_nowait(event)
        except anyio.WouldBlock:
            self.dropped += 1
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._bus._remove(self)

    async def receive(self) -> Any:
        return await self._receive.receive()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self._receive.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    def close(self) -> None:
        self._bus._remove(self)
        self._send.close()
        self._receive.close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Fan-out of runtime events to any number of subscribers and listeners."""

    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []
        self._listeners: list[Listener] = []

    def subscribe(self, buffer: int = 1024) -> Subscription:
        """A new subscription; `buffer` events may queue before newer ones are dropped."""
        subscription = Subscription(self, buffer if buffer > 0 else math.inf)  # type: ignore[arg-type]
        self._subscriptions.append(subscription)
        return subscription

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(event)` synchronously for every event (must not block)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    @property
    def watched(self) -> bool:
        """Does anyone receive events? (An event nobody receives need not be built.)"""
        return bool(self._listeners or self._subscriptions)

    def publish(self, event: Any) -> None:
        if self._listeners:
            for listener in list(self._listeners):
                listener(event)
        if self._subscriptions:
            for subscription in list(self._subscriptions):
                subscription.offer(event)

    def _remove(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)
