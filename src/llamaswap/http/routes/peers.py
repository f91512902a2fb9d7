"""Forwarding to peers: other llama-swap/llamaswap (or OpenAI-compatible) servers (§4.8).

No lease and no loading stream: the peer schedules its own models. The model name is
rewritten to the peer's own ID when the client used `<peer>/<model>`, the peer's
filters apply, and the client's credentials are never sent: the peer gets its own
`apiKey` (as Bearer and x-api-key) or no credentials at all.
"""

from __future__ import annotations

import time

from aiohttp import web

from llamaswap.runtime.events import RequestFinished

from ..extract import Inbound
from ..filters import rewritten_body
from ..naming import PeerTarget
from ..proxy import CREDENTIALS, Exchange, forward, raised_status, upstream_request_headers
from ..service import Service


async def forward_to_peer(
    request: web.Request, service: Service, target: PeerTarget, inbound: Inbound, path: str
) -> web.StreamResponse:
    peer = service.config.peers[target.peer_id]
    renamed = target.model if target.model != inbound.model else ""
    body, extra_headers = await rewritten_body(inbound, renamed, peer.filters, target.requested)
    # The client's credentials never leave the machine: a peer gets its own apiKey or none.
    headers = upstream_request_headers(request, extra_drop=CREDENTIALS)
    headers.update(extra_headers)
    if peer.api_key:
        headers["Authorization"] = f"Bearer {peer.api_key}"
        headers["x-api-key"] = peer.api_key
    exchange = Exchange()
    started = time.monotonic()
    try:
        response = await forward(
            request,
            service.client,
            peer.proxy.rstrip("/") + path,
            body,
            exchange,
            headers=headers,
            timeouts=peer.timeouts,
        )
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
            )
        )
    return response
