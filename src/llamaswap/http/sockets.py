"""Websockets to local models and peers: who may open one, and what it holds while open.

Rules (llama-swap §4.6, `compat.ignoreWebsockets`):

1. By default an upgrade is a request like any other: it may load its model, waits its
   turn, counts against `concurrencyLimit`, and holds its lease for the socket's whole
   life, so the model is neither swapped out nor unloaded by its ttl while the socket is
   open. The lease ends when either side closes; an unload or a crash cuts the socket
   (close 1001).
2. With `compat.ignoreWebsockets` (always on for `comfyui_auto`) the router decides with
   `may_load=False`: a model that is not ready, or is about to go, gets a 409 and is not
   started. A ready one is leased only for the handshake; the open socket then holds
   nothing (it does not keep a swap waiting, does not count for concurrency or ttl) and is
   cut (close 1001) when its model leaves ready, as the upstream's exit would cut it.
3. A caller may forbid loading for its own reason (`upstream.ignorePaths`, ComfyUI's
   sub-paths): then the router decides with `may_load=False` and the 409 says why.
4. A malformed handshake is a 400, answered before anything could load; where nothing
   may load, the 409 of rules 2 and 3 comes first (as llama-swap decides before the
   upstream sees the handshake).
5. Peers schedule their own models: their sockets hold no lease and carry the peer's
   credentials, never the client's.
6. Every open socket is cut (1001) when the HTTP server shuts down.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web
from multidict import CIMultiDict

from llamaswap.fsm.names import PROCESS_SERVING
from llamaswap.runtime.events import ProcessStateChanged, RequestFinished
from llamaswap.scheduling import ModelNotLoaded, RoutingError

from .errors import error_response, routing_error_response
from .proxy import cut_short
from .service import Service, service_of
from .websocket import Bridge, connect, handshake_problem


class OpenSockets:
    """The bridges open on this server, so a shutdown can cut them (rule 6)."""

    def __init__(self) -> None:
        self.bridges: set[Bridge] = set()

    async def cut_all(self, _app: web.Application) -> None:
        for bridge in list(self.bridges):
            bridge.cut("llamaswap is shutting down")


OPEN_SOCKETS = web.AppKey("llamaswap_open_sockets", OpenSockets)


def install(app: web.Application) -> None:
    """Keep the registry of open sockets on `app` (idempotent)."""
    if OPEN_SOCKETS not in app:
        sockets = app[OPEN_SOCKETS] = OpenSockets()
        app.on_shutdown.append(sockets.cut_all)


def ignored_refusal(model_id: str) -> str:
    return f"model {model_id} is not loaded; ignored websocket requests cannot start it"


async def relay(
    request: web.Request, bridge: Bridge, why_cut: Callable[[], str] = str
) -> web.StreamResponse:
    """Relay until the socket ends, registered for a shutdown cut meanwhile."""
    registry = request.app[OPEN_SOCKETS].bridges
    registry.add(bridge)
    try:
        await bridge.relay(why_cut)
    finally:
        registry.discard(bridge)
    return bridge.client


async def serve_local(
    request: web.Request,
    model_id: str,
    path: str,
    *,
    headers: CIMultiDict[str] | None = None,
    refusal: str | None = None,
) -> web.StreamResponse:
    """A websocket to a local model's upstream at `path` (rules 1-4)."""
    service = service_of(request)
    ignored = service.config.models[model_id].ignore_websockets
    problem = handshake_problem(request)
    if problem is not None and not ignored and refusal is None:
        return error_response(request, 400, problem)  # before it could load anything
    started = time.monotonic()
    status = 499  # the client left before an answer
    try:
        if ignored:
            response = await _unheld(request, service, model_id, path, headers, refusal)
        else:
            response = await _held(request, service, model_id, path, headers, refusal)
        status = response.status
        return response
    finally:
        service.bus.publish(
            RequestFinished(
                request.method, request.path, model_id, status, time.monotonic() - started
            )
        )


async def _held(
    request: web.Request,
    service: Service,
    model_id: str,
    path: str,
    headers: CIMultiDict[str] | None,
    refusal: str | None,
) -> web.StreamResponse:
    """Rule 1: the lease lives as long as the socket."""
    try:
        async with service.router.lease(model_id, may_load=refusal is None) as lease:
            bridge = None
            url = lease.proxy.rstrip("/") + path
            with lease.scope:
                opened = await _open(request, service, model_id, url, headers)
                if not isinstance(opened, Bridge):
                    return opened
                bridge = opened
                await relay(request, bridge, lambda: cut_short(model_id, lease.revoked))
            if bridge is None:  # revoked during the handshake
                return error_response(request, 503, cut_short(model_id, lease.revoked))
            return bridge.client
    except ModelNotLoaded:
        return error_response(request, 409, refusal or ignored_refusal(model_id))
    except RoutingError as error:
        return routing_error_response(request, error)


async def _unheld(
    request: web.Request,
    service: Service,
    model_id: str,
    path: str,
    headers: CIMultiDict[str] | None,
    refusal: str | None,
) -> web.StreamResponse:
    """Rule 2: leased for the handshake only, cut when the model leaves ready."""
    bridge: Bridge | None = None
    left: list[str] = []

    def on_event(event: object) -> None:
        if (
            isinstance(event, ProcessStateChanged)
            and event.model == model_id
            and event.new not in PROCESS_SERVING
        ):
            left.append(f"model {model_id} is {event.new}")
            if bridge is not None:
                bridge.cut(left[0])

    service.bus.add_listener(on_event)  # before the lease: no stop can fall in between
    try:
        opened: Bridge | web.Response | None = None
        try:
            async with service.router.lease(model_id, may_load=False) as lease:
                url = lease.proxy.rstrip("/") + path
                with lease.scope:
                    opened = await _open(request, service, model_id, url, headers)
                if opened is None or lease.revoked:  # unloaded during the handshake
                    if isinstance(opened, Bridge):
                        opened.cut(cut_short(model_id, lease.revoked))
                        return await relay(request, opened)
                    return error_response(request, 503, cut_short(model_id, lease.revoked))
        except ModelNotLoaded:
            return error_response(request, 409, refusal or ignored_refusal(model_id))
        except RoutingError as error:
            return routing_error_response(request, error)
        assert opened is not None  # the lease block returned otherwise
        if not isinstance(opened, Bridge):
            return opened
        bridge = opened
        if left:
            bridge.cut(left[0])
        return await relay(request, bridge)
    finally:
        service.bus.remove_listener(on_event)


async def _open(
    request: web.Request,
    service: Service,
    model_id: str,
    url: str,
    headers: CIMultiDict[str] | None,
) -> Bridge | web.Response:
    timeouts = service.config.models[model_id].timeouts
    return await connect(
        request,
        service.client,
        url,
        headers=headers,
        max_size=service.max_body,
        connect_timeout=timeouts.connect if timeouts.connect > 0 else None,
    )


async def serve_peer(
    request: web.Request, peer_id: str, model: str, url: str, headers: CIMultiDict[str]
) -> web.StreamResponse:
    """Rule 5: a websocket to a peer, relayed without a lease (`connect` checks the
    handshake)."""
    service = service_of(request)
    started = time.monotonic()
    status = 499
    try:
        opened = await connect(
            request, service.client, url, headers=headers, max_size=service.max_body
        )
        response = opened if not isinstance(opened, Bridge) else await relay(request, opened)
        status = response.status
        return response
    finally:
        service.bus.publish(
            RequestFinished(
                request.method,
                request.path,
                f"{peer_id}/{model}",
                status,
                time.monotonic() - started,
            )
        )
