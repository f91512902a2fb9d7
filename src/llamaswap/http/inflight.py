"""The requests in flight, as llama-swap's dashboards see them (`inflight` on /api/events).

Rules (llama-swap's `internal/server/inflight.go`):

1. Tracked: model-routed requests once their model is known (waiting for a load
   included), and `/upstream/<model>/<path>` when `<path>` is itself a model-routed
   endpoint for that method. Not tracked: ignored websockets, ComfyUI, operator routes.
2. Every change is published on the service's bus as an `InflightChanged` whose payload
   is llama-swap's `InFlightRequestsEvent`: `{"operation": "upsert", "request": entry}`
   when a request starts or its response headers are known, `{"operation": "remove",
   "id"}` when it ends, and, at most every 250 ms while the body streams, an upsert with
   the bytes sent so far. `snapshot()` gives `{"operation": "snapshot", "requests": [..]}`
   (the key left out when there are none, as Go's `omitempty` does).
3. An entry is `{id, timestamp, model, req_path, method, req_headers, remote_ip,
   resp_headers, resp_bytes, elapsed_ms, metadata?}`; credentials and cookies in the
   headers read `[REDACTED]`.
4. Publishing never blocks: the bus is lossy per subscriber, and /api/events sends a
   fresh snapshot to a subscriber that lost events.
5. `POST /api/inflight/<id>/cancel` (llama-swap's) cancels the handler's task while it
   runs its exchange (`Cancellable`); the handler then ends the response itself, cleanly
   (`CANCELLED`), and the entry goes away as for any finished request. A cancel that
   arrives before the handler entered that block takes effect when it does. (A native
   task cancel, told apart by a flag and `uncancel`: an anyio cancel scope per request
   cost more than the rest of the tracking.)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from llamaswap.runtime.events import EventBus
from llamaswap.shown_headers import header_map

from .middleware import client_ip
from .proxy import CLIENT_CLOSED, Exchange, end_broken
from .service import SERVICE

UPDATE_SECONDS = 0.25
CANCELLED = "the request was cancelled by an operator"


class InflightChanged:
    """One llama-swap `InFlightRequestsEvent`, ready to encode.

    An upsert's payload is built when first read, from the values the entry had when
    it was published: only /api/events subscribers read it, so a request nobody
    watches does not pay for three JSON documents and two header maps.
    """

    __slots__ = ("_build", "_payload")

    def __init__(
        self,
        payload: dict[str, Any] | None = None,
        *,
        build: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self._payload = payload
        self._build = build

    @property
    def payload(self) -> dict[str, Any]:
        if self._payload is None:
            assert self._build is not None, "an event with neither a payload nor a builder"
            self._payload, self._build = self._build(), None
        return self._payload

    def __repr__(self) -> str:
        return f"InflightChanged({self.payload!r})"


def _rfc3339(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")


@dataclass(eq=False)
class Entry:
    """One tracked request (rule 3). Headers are kept as they came and mapped (rule 3's
    canonical names, credentials redacted) only when the entry is shown."""

    id: str
    model: str
    req_path: str
    method: str
    request_headers: Mapping[str, str]
    remote_ip: str
    metadata: dict[str, str]
    tracker: InflightTracker
    started_at: float = field(default_factory=time.time)
    started: float = field(default_factory=time.monotonic)
    response_headers: Mapping[str, str] | None = None
    resp_bytes: int = 0
    last_emitted: float = field(default_factory=time.monotonic)
    cancel_requested: bool = False
    task: asyncio.Task[Any] | None = None  # the handler's, while it may be cancelled

    @property
    def req_headers(self) -> dict[str, str]:
        return header_map(self.request_headers)

    @property
    def resp_headers(self) -> dict[str, str]:
        return header_map(self.response_headers) if self.response_headers is not None else {}

    def as_json(self) -> dict[str, Any]:
        return self.shown(time.monotonic(), self.response_headers, self.resp_bytes)

    def shown(
        self, at: float, response_headers: Mapping[str, str] | None, resp_bytes: int
    ) -> dict[str, Any]:
        """The entry as llama-swap shows it, as it was at `at` (monotonic) with those
        response headers and bytes."""
        entry: dict[str, Any] = {
            "id": self.id,
            "timestamp": _rfc3339(self.started_at),
            "model": self.model,
            "req_path": self.req_path,
            "method": self.method,
            "req_headers": self.req_headers,
            "remote_ip": self.remote_ip,
            "resp_headers": header_map(response_headers) if response_headers is not None else {},
            "resp_bytes": resp_bytes,
            "elapsed_ms": max(0, int((at - self.started) * 1000)),
        }
        if self.metadata:
            entry["metadata"] = dict(self.metadata)
        return entry

    # the proxy's callbacks (Exchange.watcher)
    def headers(self, headers: Mapping[str, str]) -> None:
        self.response_headers = headers
        self.tracker.upsert(self)

    def sent(self, size: int) -> None:
        self.resp_bytes += size
        if time.monotonic() - self.last_emitted >= UPDATE_SECONDS:
            self.tracker.upsert(self)


class InflightTracker:
    """The tracked requests of one server (rule 2)."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._ids = itertools.count(1)
        self._entries: dict[str, Entry] = {}

    def add(self, request: web.Request, model: str, path: str, metadata: dict[str, str]) -> Entry:
        entry = Entry(
            id=str(next(self._ids)),
            model=model,
            req_path=path,
            method=request.method,
            request_headers=request.headers,
            remote_ip=client_ip(request),
            metadata=metadata,
            tracker=self,
        )
        self._entries[entry.id] = entry
        self.upsert(entry)
        return entry

    def upsert(self, entry: Entry) -> None:
        if entry.id in self._entries:
            now = entry.last_emitted = time.monotonic()
            shown = functools.partial(entry.shown, now, entry.response_headers, entry.resp_bytes)
            self._bus.publish(InflightChanged(build=lambda: _upsert(shown())))

    def remove(self, entry: Entry) -> None:
        if self._entries.pop(entry.id, None) is not None:
            self._bus.publish(InflightChanged({"operation": "remove", "id": entry.id}))

    def entry(self, entry_id: str) -> Entry | None:
        return self._entries.get(entry_id)

    def cancel(self, entry_id: str) -> bool:
        """Cancel a tracked request (rule 5); False when there is none with that id."""
        entry = self._entries.get(entry_id)
        if entry is None:
            return False
        entry.cancel_requested = True
        if entry.task is not None:
            entry.task.cancel()
        return True

    def snapshot(self) -> dict[str, Any]:
        entries = sorted(self._entries.values(), key=lambda e: (e.started_at, int(e.id)))
        snapshot: dict[str, Any] = {"operation": "snapshot"}
        if entries:
            snapshot["requests"] = [entry.as_json() for entry in entries]
        return snapshot


def _upsert(entry: dict[str, Any]) -> dict[str, Any]:
    return {"operation": "upsert", "request": entry}


INFLIGHT = web.AppKey("llamaswap_inflight", InflightTracker)


def install(app: web.Application) -> None:
    """Keep the tracker on `app` (idempotent)."""
    if INFLIGHT not in app:
        app[INFLIGHT] = InflightTracker(app[SERVICE].bus)


@contextlib.contextmanager
def tracked(
    request: web.Request,
    model: str,
    path: str | None,
    exchange: Exchange | None = None,
    metadata: dict[str, str] | None = None,
) -> Iterator[Entry | None]:
    """Track the request while the block runs (`path` None: not tracked); the entry
    watches `exchange`'s response headers and bytes."""
    if path is None:
        yield None
        return
    tracker = request.app[INFLIGHT]
    entry = tracker.add(request, model, path, metadata or {})
    if exchange is not None:
        exchange.watcher = entry
    try:
        yield entry
    finally:
        tracker.remove(entry)


class Cancellable:
    """`with Cancellable(watcher):` the block an operator's cancel ends (rule 5), for a
    tracked entry (any other watcher, or none: a block nobody cancels). A cancelled block
    ends quietly and the code after it runs: the handler must end the response as
    cancelled. Any other cancellation (the client left, shutdown) goes on as it came."""

    __slots__ = ("_entry",)

    def __init__(self, watcher: object) -> None:
        self._entry = watcher if isinstance(watcher, Entry) else None

    def __enter__(self) -> None:
        entry = self._entry
        if entry is not None:
            entry.task = task = asyncio.current_task()
            if entry.cancel_requested and task is not None:
                task.cancel()  # asked before the block began: it ends at its first await

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> bool:
        entry = self._entry
        if entry is None:
            return False
        task, entry.task = entry.task, None
        if kind is not asyncio.CancelledError or not entry.cancel_requested or task is None:
            return False
        return task.uncancel() == 0  # only the operator's cancel: it ends here


async def end_cancelled(request: web.Request, exchange: Exchange) -> web.StreamResponse:
    """End a cancelled request cleanly: an error body (499) when nothing was sent yet, an
    error event and `[DONE]` on an event stream; a plain body already started is cut."""
    return await end_broken(request, exchange, CANCELLED, CLIENT_CLOSED, "request_cancelled")
