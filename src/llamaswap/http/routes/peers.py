"""Forwarding to peers: other llama-swap/llamaswap (or OpenAI-compatible) servers (§4.8).

No lease and no loading stream: the peer schedules its own models (websockets too).
The model name is rewritten to the peer's own ID when the client used `<peer>/<model>`
(in a GET's query and an urlencoded form too), the peer's filters apply, and the
client's credentials are never sent: the peer gets its own `apiKey` (as Bearer and
x-api-key) or no credentials at all.
"""

from __future__ import annotations

import time

from aiohttp import web
from multidict import CIMultiDict

from llamaswap.config import PeerConfig
from llamaswap.runtime.events import RequestFinished

from .. import activity, sockets
from ..extract import Inbound
from ..filters import rewritten_body
from ..inflight import Cancellable, end_cancelled
from ..naming import PeerTarget
from ..proxy import (
    CREDENTIALS,
    TAIL_BYTES,
    Exchange,
    Watcher,
    forward,
    raised_status,
    upstream_request_headers,
)
from ..service import Service
from ..websocket import is_upgrade


def peer_headers(request: web.Request, peer: PeerConfig) -> CIMultiDict[str]:
    """The client's credentials never leave the machine: a peer gets its own apiKey or none."""
    headers = upstream_request_headers(request, extra_drop=CREDENTIALS)
    if peer.api_key:
        headers["Authorization"] = f"Bearer {peer.api_key}"
        headers["x-api-key"] = peer.api_key
    return headers


async def forward_to_peer(
    request: web.Request,
    service: Service,
    target: PeerTarget,
    inbound: Inbound,
    path: str,
    *,
    watcher: Watcher | None = None,
) -> web.StreamResponse:
    peer = service.config.peers[target.peer_id]
    renamed = target.model if target.model != inbound.model else ""
    headers = peer_headers(request, peer)
    url = peer.proxy.rstrip("/") + path
    if is_upgrade(request):
        return await sockets.serve_peer(request, target.peer_id, target.model, url, headers)
    body, extra_headers = await rewritten_body(
        inbound, renamed, peer.filters, target.requested, pinned=renamed
    )
    headers.update(extra_headers)
    exchange = Exchange(watcher=watcher, tail=activity.new_tail(request))
    started = time.monotonic()
    try:
        with Cancellable(watcher):
            return await forward(
                request,
                service.client,
                url,
                body,
                exchange,
                headers=headers,
                timeouts=peer.timeouts,
            )
        return await end_cancelled(request, exchange)
    except BaseException as error:  # recorded as the access log has it, then re-raised
        exchange.status = raised_status(error)
        raise
    finally:
        service.bus.publish(
            RequestFinished(
                request.method,
                request.path,
                f"{target.peer_id}/{target.model}",
                exchange.status,
                time.monotonic() - started,
                tail=bytes(exchange.tail[-TAIL_BYTES:]),
                **activity.recording(
                    request, exchange, inbound.body, recorded=request.method == "POST"
                ),
            )
        )
