"""Raw passthrough to a local model (`/upstream/<model>/...`, `/comfyui/...`): the request
goes to the upstream as the client sent it (no filters, no renaming, no loading stream),
`Host` included, as llama-swap's reverse proxy keeps it: web apps behind it compare
`Origin` with `Host` (ComfyUI refuses a POST or websocket whose Origin is not its Host).

The router decides whether the request may load the model (`may_load`); when it may not
and the model is not ready, the answer is a 409 with the caller's reason, and nothing is
started. A websocket upgrade takes the same decision (`llamaswap.http.sockets`).
"""

from __future__ import annotations

import time
from urllib.parse import unquote

from aiohttp import web
from multidict import CIMultiDict

from llamaswap.runtime.events import RequestFinished
from llamaswap.scheduling import ModelNotLoaded, RoutingError

from . import activity, sockets
from .errors import error_response, routing_error_response
from .inflight import Cancellable, end_cancelled, tracked
from .proxy import TAIL_BYTES, Exchange, forward_leased, raised_status, upstream_request_headers
from .service import service_of
from .websocket import is_upgrade


def climbs(path: str) -> bool:
    """Does the path contain a `..` segment, even percent-encoded or behind a backslash?"""
    decoded = unquote(path).replace("\\", "/")
    return any(part == ".." for part in decoded.split("/"))


def untouched_headers(request: web.Request) -> CIMultiDict[str]:
    """The client's headers for the upstream (proxy.py's rules), with the client's Host."""
    headers = upstream_request_headers(request)
    if request.headers.get("Host"):
        headers["Host"] = request.headers["Host"]
    return headers


async def forward_untouched(
    request: web.Request,
    model_id: str,
    tail: str,
    *,
    refusal: str | None = None,
    track_as: str | None = None,
) -> web.StreamResponse:
    """Forward to `model_id`'s upstream at `tail` (raw path and query). `refusal`: the
    request must not load the model, and this is the 409's message when it is not ready.
    `track_as`: the path shown for it among the in-flight requests (None: not shown)."""
    headers = untouched_headers(request)
    if is_upgrade(request):
        return await sockets.serve_local(request, model_id, tail, headers=headers, refusal=refusal)
    service = service_of(request)
    body = await request.read()
    metered = track_as is not None and request.method == "POST"  # as llama-swap meters
    exchange = Exchange(tail=activity.new_tail(request) if metered else bytearray())
    started = time.monotonic()
    try:
        with tracked(request, model_id, track_as, exchange) as entry:
            with Cancellable(entry):
                async with service.router.lease(model_id, may_load=refusal is None) as lease:
                    timeouts = service.config.models[model_id].timeouts
                    return await forward_leased(
                        request,
                        service.client,
                        lease,
                        tail,
                        body,
                        exchange,
                        headers=headers,
                        timeouts=timeouts,
                    )
            return await end_cancelled(request, exchange)
    except ModelNotLoaded:
        exchange.status = 409
        return error_response(request, 409, refusal or f"model {model_id} is not loaded")
    except RoutingError as error:
        exchange.status = error.status
        return routing_error_response(request, error)
    except BaseException as error:  # recorded as the access log has it, then re-raised
        exchange.status = raised_status(error)
        raise
    finally:
        service.bus.publish(
            RequestFinished(
                request.method,
                request.path,
                model_id,
                exchange.status,
                time.monotonic() - started,
                tail=bytes(exchange.tail[-TAIL_BYTES:]) if metered else b"",
                **activity.recording(request, exchange, body, recorded=metered),
            )
        )
