"""Model-routed endpoints: read the model, route it, wait for it, stream the answer.

Steps for every request: read the body once; resolve the name (profile, selector,
alias, peer); rewrite the body (filters); ask the router for a lease (admission and
429 happen there, before any byte is sent); optionally stream loading progress while
waiting; forward and stream back; release the lease (even when the client left).
"""

from __future__ import annotations

import contextlib
import time
from urllib.parse import unquote

import anyio
from aiohttp import web
from multidict import CIMultiDict

from llamaswap.config import ModelConfig
from llamaswap.runtime.callers import admit
from llamaswap.runtime.events import RequestFinished
from llamaswap.scheduling import RoutingError

from .. import activity, inflight, sockets, stalls
from ..errors import error_response, routing_error_response
from ..extract import NO_MODEL, BadRequest, Inbound, NoModel, read_inbound
from ..filters import rewrite_query, rewritten_body
from ..inflight import Cancellable, end_cancelled, tracked
from ..keepalive import requested_keep_alive
from ..loading import LoadingStream, wants_loading_stream
from ..naming import LocalTarget, NoSelectorTarget, PeerTarget, UnknownModel, resolve
from ..proxy import (
    TAIL_BYTES,
    Exchange,
    Watcher,
    end_broken,
    forward_leased,
    raised_status,
    upstream_request_headers,
)
from ..router_mode import router_props
from ..service import Service, service_of
from ..websocket import is_upgrade
from .peers import forward_to_peer

POST_JSON = (
    "/v1/chat/completions",
    "/v1/responses",
    "/v1/completions",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1/embeddings",
    "/reranking",
    "/rerank",
    "/v1/rerank",
    "/v1/reranking",
    "/infill",
    "/completion",
    "/v1/audio/speech",
    "/v1/audio/voices",
    "/v1/images/generations",
    "/sdapi/v1/txt2img",
    "/sdapi/v1/img2img",
    "/audioapi/v1/tasks/run",
    "/v/chat/completions",
    "/v/responses",
    "/v/completions",
    "/v/messages",
    "/v/messages/count_tokens",
    "/v/embeddings",
    "/v/rerank",
    "/v/reranking",
)
POST_MULTIPART = ("/v1/audio/transcriptions", "/v1/images/edits")
GET_WITH_MODEL = ("/v1/audio/voices", "/sdapi/v1/loras", "/props")


def add_routes(app: web.Application) -> None:
    sockets.install(app)
    inflight.install(app)
    for path in (*POST_JSON, *POST_MULTIPART):
        app.router.add_post(path, handle_model_request)
    for path in GET_WITH_MODEL:
        app.router.add_get(path, handle_model_request)


def is_model_route(method: str, path: str) -> bool:
    """Is `path` (raw or decoded) one of these endpoints for `method`?"""
    path = unquote(path)
    if method == "POST":
        return path in POST_JSON or path in POST_MULTIPART
    return method == "GET" and path in GET_WITH_MODEL


def upstream_path(request: web.Request) -> str:
    """The raw path and query to send upstream (`/v/...` and `/audioapi/...` lose the prefix)."""
    raw = request.raw_path
    if raw.startswith("/v/"):
        return raw[2:]
    if raw.startswith("/audioapi/"):
        return raw[len("/audioapi") :]
    return raw


async def handle_model_request(request: web.Request) -> web.StreamResponse:
    service = service_of(request)
    try:
        inbound = await read_inbound(request, form_route=request.path in POST_MULTIPART)
    except BadRequest as exc:
        return error_response(request, 400, str(exc))
    except NoModel as exc:
        return error_response(request, 404, str(exc))
    upgrade = is_upgrade(request)
    if not inbound.model:
        if request.path == "/props" and not upgrade:  # a client of llama.cpp's router mode
            return web.json_response(router_props(service))
        return error_response(request, 404, NO_MODEL)
    try:
        target = resolve(
            inbound.model,
            service.config,
            profile=service.active_profile,
            selectors=service.selectors,
            state_of=service.router.model_state,
        )
    except UnknownModel as exc:
        return error_response(request, 404, str(exc), code="model_not_found")
    except NoSelectorTarget as exc:
        return error_response(request, 503, str(exc))
    if isinstance(target, PeerTarget):  # peers have no lease: the key's scope is checked here
        try:
            admit(_target_name(target), target.model)
        except RoutingError as error:
            return routing_error_response(request, error)
    # an ignored websocket holds nothing: no selector reservation, not in flight
    ignored = (
        upgrade
        and isinstance(target, LocalTarget)
        and service.config.models[target.model_id].ignore_websockets
    )
    reservation = (
        service.selectors.reserve(target.selector, _target_name(target))
        if target.selector and not ignored
        else contextlib.nullcontext()
    )
    metadata = {"selector": target.selector} if target.selector else {}
    track_as = None if ignored else request.path
    with reservation, tracked(request, _target_name(target), track_as, None, metadata) as entry:
        if isinstance(target, PeerTarget):
            path = _renamed_query(request, upstream_path(request), inbound, target.model)
            return await forward_to_peer(request, service, target, inbound, path, watcher=entry)
        path = _renamed_query(request, upstream_path(request), inbound, target.requested)
        return await serve_local(request, service, target, inbound, path, watcher=entry)


def _renamed_query(request: web.Request, path: str, inbound: Inbound, name: str) -> str:
    """A GET's `?model=` renamed by a profile pin, a selector or a peer (filters.py)."""
    if request.method != "GET" or name == inbound.model:
        return path
    return rewrite_query(path, name)


def _target_name(target: LocalTarget | PeerTarget) -> str:
    if isinstance(target, LocalTarget):
        return target.model_id
    return f"{target.peer_id}/{target.model}"


async def local_body(
    model: ModelConfig, target: LocalTarget, inbound: Inbound
) -> tuple[bytes, dict[str, str]]:
    """The body to send upstream: renamed for useModelName or a profile/selector rewrite."""
    pinned = target.requested if target.requested != inbound.model else ""
    renamed = model.use_model_name or pinned
    return await rewritten_body(inbound, renamed, model.filters, target.requested, pinned=pinned)


async def serve_local(
    request: web.Request,
    service: Service,
    target: LocalTarget,
    inbound: Inbound,
    path: str,
    *,
    watcher: Watcher | None = None,
) -> web.StreamResponse:
    if is_upgrade(request):
        return await sockets.serve_local(request, target.model_id, path)
    model = service.config.models[target.model_id]
    inbound, keep_alive = requested_keep_alive(inbound)
    body, extra_headers = await local_body(model, target, inbound)
    headers = upstream_request_headers(request)
    headers.update(extra_headers)
    loading = None
    if wants_loading_stream(path, inbound.streaming, model.send_loading_state):
        loading = LoadingStream(request, target.model_id)
    started = time.monotonic()
    exchange = Exchange(watcher=watcher, tail=activity.new_tail(request))
    try:
        with Cancellable(watcher):  # an operator's cancel ends the block early
            forwarding = _lease_and_forward(
                request,
                service,
                target.model_id,
                model,
                path,
                body,
                headers,
                exchange,
                loading,
                keep_alive,
            )
            if loading is None:  # no task group: most requests need none
                return await forwarding
            async with anyio.create_task_group() as tg:
                tg.start_soon(loading.run)
                return await forwarding
        if exchange.response is None and loading is not None:
            exchange.response, exchange.is_sse = loading.response, True
        return await end_cancelled(request, exchange)
    except BaseException as error:  # recorded as the access log has it, then re-raised
        exchange.status = raised_status(error)
        raise
    finally:
        _record(service, request, target.model_id, exchange, started, inbound.body, watcher)


async def _lease_and_forward(
    request: web.Request,
    service: Service,
    model_id: str,
    model: ModelConfig,
    path: str,
    body: bytes,
    headers: CIMultiDict[str],
    exchange: Exchange,
    loading: LoadingStream | None,
    keep_alive: float | None = None,
) -> web.StreamResponse:
    try:
        async with service.router.lease(
            model_id,
            on_position=loading.position if loading else None,
            on_admitted=loading.admitted if loading else None,
            keep_alive=keep_alive,
        ) as lease:
            prepared = None
            if loading is not None:
                # the "Done!" line is written while the lease is held: bounded like any write
                seconds = stalls.write_timeout(request)
                try:
                    prepared = await stalls.within(request, seconds, loading.finish(ok=True))
                except stalls.ClientStalled:  # cut: nothing is forwarded
                    return loading.response or error_response(request, 503, "client stalled")
            return await forward_leased(
                request,
                service.client,
                lease,
                path,
                body,
                exchange,
                headers=headers,
                timeouts=model.timeouts,
                prepared=prepared,
            )
    except RoutingError as error:
        stream = await loading.finish(ok=False) if loading else None
        if stream is None:
            exchange.status = error.status
            return routing_error_response(request, error)
        exchange.response = stream
        exchange.is_sse = True
        return await end_broken(request, exchange, str(error), error.status, error.code)


def _record(
    service: Service,
    request: web.Request,
    model_id: str,
    exchange: Exchange,
    started: float,
    body: bytes,
    watcher: Watcher | None,
) -> None:
    elapsed = time.monotonic() - started
    service.bus.publish(
        RequestFinished(
            method=request.method,
            path=request.path,
            model=model_id,
            status=exchange.status,
            duration=elapsed,
            tail=bytes(exchange.tail[-TAIL_BYTES:]),
            metadata=getattr(watcher, "metadata", {}),
            **activity.recording(request, exchange, body, recorded=request.method == "POST"),
        )
    )
