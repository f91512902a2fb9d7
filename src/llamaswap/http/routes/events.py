"""`GET /api/events`: one SSE stream of everything the web UI shows live.

A browser keeps this one connection open instead of polling: model states, the router's
state, queue and in-flight counts, swaps, finished requests and log lines. Each frame is
`event: message` with a JSON `{"type", "data"}` body whose `data` is an object. Every
process transition is a `stateChange` frame (`model`, `from`, `to`, `event`, `reason`,
with the states and events of spec/process.fsm.yaml) followed by the `modelStatus` of
every model.

Three frame types are llama-swap's own, for dashboards written for it, and keep its
wire format: `data` is a JSON *string* holding the object (its UI does
`JSON.parse(message.data)`). `uiConfig` (`{"activity": {"session_id": [...]}}`) on
connect and after a reload, `profileChanged` (`{"active": name|null}`) on connect and
when the active profile changes, `inflight` (`llamaswap.http.inflight`) as a snapshot
on connect and as upserts and removals after it. A client that lost events (a full
buffer) gets a fresh `inflight` snapshot with the next frame.

The stream is lossy by design: it reads one bounded subscription, so a client that falls
behind misses events instead of slowing the router or the log writers. A missed state
change costs nothing lasting, because every `modelStatus` carries every model's state.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import anyio
from aiohttp import web

from llamaswap.config import ModelConfig
from llamaswap.fsm.names import PROCESS_ERROR, ROUTER_CLOSED, RouterEvent
from llamaswap.runtime.events import (
    LogLine,
    ProcessStateChanged,
    ProfileChanged,
    RequestFinished,
    RouterSnapshot,
    RouterStateChanged,
    Subscription,
    SwapFinished,
    SwapStarted,
)

from .. import inflight
from ..inflight import INFLIGHT, InflightChanged
from ..service import Service, service_of
from ..usage import tokens_per_second
from .models import _capability_fields as capability_fields
from .profiles import active_profile

BUFFER = 1024
KEEPALIVE_SECONDS = 15.0
KEEPALIVE = b": keepalive\n\n"
HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "X-Content-Type-Options": "nosniff",
}


class Streams:
    """The cancel scopes of the open event streams, so a server shutdown ends them at once
    (aiohttp would otherwise wait its whole shutdown timeout for them to finish)."""

    def __init__(self) -> None:
        self.scopes: set[anyio.CancelScope] = set()

    async def close_all(self, _app: web.Application) -> None:
        for scope in list(self.scopes):
            scope.cancel()


STREAMS = web.AppKey("llamaswap_event_streams", Streams)


def add_routes(app: web.Application) -> None:
    inflight.install(app)
    streams = app[STREAMS] = Streams()
    app.on_shutdown.append(streams.close_all)
    app.router.add_get("/api/events", events)


def frame(kind: str, data: dict[str, Any] | str) -> bytes:
    """One SSE frame; json.dumps escapes newlines, so the payload is always one `data:` line."""
    payload = json.dumps({"type": kind, "data": data}, ensure_ascii=False, separators=(",", ":"))
    return f"event: message\ndata: {payload}\n\n".encode()


def llama_swap_frame(kind: str, data: dict[str, Any]) -> bytes:
    """A frame in llama-swap's wire format: `data` encoded a second time, as a string."""
    return frame(kind, json.dumps(data, ensure_ascii=False, separators=(",", ":")))


def ui_config(service: Service) -> bytes:
    session_id = list(service.config.ui_session_headers)
    return llama_swap_frame("uiConfig", {"activity": {"session_id": session_id}})


def profile_changed(active: str | None) -> bytes:
    return llama_swap_frame("profileChanged", {"active": active})


def inflight_snapshot(request: web.Request) -> bytes:
    return llama_swap_frame("inflight", request.app[INFLIGHT].snapshot())


def model_status(service: Service, changed: ProcessStateChanged | None = None) -> bytes:
    """Every local model with its state. The changed model takes the state from its event,
    not from the actor, so a fast starting->ready still shows both steps in order."""
    router = service.router
    config = router.config  # the router's config is the new one as soon as a reload is done
    models = []
    for model_id in sorted(config.models):
        model = config.models[model_id]
        state: str = router.model_state(model_id)
        reason = router.model_fault(model_id)
        if changed is not None and changed.model == model_id:
            state = changed.new
            reason = changed.reason if changed.new in PROCESS_ERROR else ""
        entry = {
            "id": model_id,
            "name": model.name,
            "description": model.description,
            "state": state,
            "reason": reason,
            "unlisted": model.unlisted,
            "aliases": list(model.all_aliases),
        }
        entry.update(capabilities_of(model))
        models.append(entry)
    return frame("modelStatus", {"models": models})


def capabilities_of(model: ModelConfig) -> dict[str, Any]:
    """llama-swap's `capabilities` and `context_length` of a model (none when it declares
    no capabilities), and ours: `modalities` `{in, out}` as configured, so the UI can tell
    a chat model from an embedding or speech one."""
    caps = model.capabilities
    if caps is None:
        return {}
    fields = capability_fields(caps, {})
    out: dict[str, Any] = {"modalities": {"in": list(caps.input), "out": list(caps.output)}}
    if "capabilities" in fields:
        out["capabilities"] = fields["capabilities"]
    if "context_length" in fields:
        out["context_length"] = fields["context_length"]
    return out


def state_change(event: ProcessStateChanged) -> dict[str, Any]:
    """One process transition as the UI and dashboards see it."""
    return {
        "model": event.model,
        "from": str(event.old),
        "to": str(event.new),
        "event": str(event.event),
        "reason": event.reason,
        "at": event.at,
    }


def queue(snapshot: RouterSnapshot) -> bytes:
    return frame("queue", {"queued": dict(snapshot.queued), "inFlight": dict(snapshot.in_flight)})


def log_data(source: str, text: str) -> bytes:
    return frame("logData", {"source": source, "data": text})


def encode(service: Service, event: object) -> bytes:
    """The frames for one bus or log event (empty for events the UI does not show)."""
    match event:
        case ProcessStateChanged():
            return frame("stateChange", state_change(event)) + model_status(service, event)
        case RouterStateChanged(new=new, event=router_event):
            state = frame("routerState", {"state": new})
            if router_event == RouterEvent.RELOAD_DONE:  # models may have come or gone
                state += model_status(service) + ui_config(service)
            return state
        case RouterSnapshot():
            return queue(event)
        case SwapStarted(target=target, evict=evict):
            return frame("swap", {"phase": "started", "target": target, "evict": list(evict)})
        case SwapFinished(target=target, seconds=seconds, error=error):
            data = {"phase": "finished", "target": target, "seconds": seconds, "error": error}
            return frame("swap", data)
        case RequestFinished():
            return frame(
                "activity",
                {
                    "method": event.method,
                    "path": event.path,
                    "model": event.model,
                    "status": event.status,
                    "duration": event.duration,
                    "tokensPerSecond": tokens_per_second(event.tail, event.duration),
                    "at": event.at,
                },
            )
        case LogLine(source=source, text=text):
            return log_data(source, text)
        case ProfileChanged(active=active):
            return profile_changed(active)
        case InflightChanged(payload=payload):
            return llama_swap_frame("inflight", payload)
    return b""


def initial_burst(request: web.Request, service: Service, history: bool) -> bytes:
    """What a new client needs before live events make sense: the current picture."""
    burst = model_status(service)
    burst += frame("routerState", {"state": service.router.state})
    burst += queue(service.router.snapshot)
    burst += ui_config(service)
    burst += profile_changed(active_profile(service))
    burst += inflight_snapshot(request)
    if history:
        for ring in (service.proxy_log, service.upstream_log):
            burst += b"".join(log_data(ring.source, line) for line in ring.lines())
    return burst


async def events(request: web.Request) -> web.StreamResponse:
    """Stream until the client leaves or the router starts shutting down.

    Subscriptions are taken before the burst is built (with no await in between), so no
    event falls between the two and no history line is sent twice."""
    service = service_of(request)
    response = web.StreamResponse(headers=HEADERS)
    with contextlib.ExitStack() as stack:
        inbox = stack.enter_context(service.bus.subscribe(BUFFER))
        followers = [
            stack.enter_context(ring.follow(BUFFER))
            for ring in (service.proxy_log, service.upstream_log)
        ]
        burst = initial_burst(request, service, history="no-history" not in request.query)
        scopes = request.app[STREAMS].scopes
        scope = anyio.CancelScope()
        scopes.add(scope)
        try:
            await response.prepare(request)
            await response.write(burst)
            if service.router.state in ROUTER_CLOSED:
                return response
            with scope:
                async with anyio.create_task_group() as tg:
                    for follower in followers:
                        tg.start_soon(_merge_logs, follower, inbox)
                    await _pump(request, response, service, inbox)
                    tg.cancel_scope.cancel()
        except ConnectionResetError:
            pass  # the client left between two writes
        finally:
            scopes.discard(scope)
    return response


async def _merge_logs(lines: Subscription, inbox: Subscription) -> None:
    """Feed a log ring's lines into the one bounded inbox; `offer` drops instead of blocking."""
    async for line in lines:
        inbox.offer(line)


async def _pump(
    request: web.Request, response: web.StreamResponse, service: Service, inbox: Subscription
) -> None:
    with contextlib.suppress(ConnectionResetError):  # the client left
        await _send_events(request, response, service, inbox)


async def _send_events(
    request: web.Request, response: web.StreamResponse, service: Service, inbox: Subscription
) -> None:
    dropped = inbox.dropped
    while True:
        event: object = None
        with anyio.move_on_after(KEEPALIVE_SECONDS):
            event = await inbox.receive()
        if event is None:
            await response.write(KEEPALIVE)
            continue
        data = encode(service, event)
        if inbox.dropped != dropped:  # in-flight changes were perhaps lost: start over
            dropped = inbox.dropped
            data += inflight_snapshot(request)
        if data:
            await response.write(data)
        if isinstance(event, RouterStateChanged) and event.new in ROUTER_CLOSED:
            return
