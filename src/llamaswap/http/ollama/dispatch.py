"""From a resolved Ollama request to an upstream: lease, body, headers, activity.

Local models go through the router exactly as `/v1/...` requests do: `lease()` admits
(429), queues, swaps and holds the model, with the request's `keep_alive`; the model's
filters and `useModelName` rewrite the translated body. Peers get the body with their
filters, their own key and no lease (they schedule their own models). Every request is
published as `RequestFinished` on the bus, with the status the client got.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from llamaswap.runtime.callers import admit
from llamaswap.runtime.events import RequestFinished
from llamaswap.runtime.leases import Lease

from ..activity import request_key_id
from ..extract import Inbound
from ..filters import encode_json, rewritten_body
from ..naming import LocalTarget, PeerTarget, Target
from ..proxy import TAIL_BYTES, Exchange, raised_status
from ..routes.inference import local_body
from ..service import Service
from .upstream import Destination, request_headers


@dataclass(frozen=True)
class Held:
    """Where to send the request, and the lease holding the model (None for a peer)."""

    destination: Destination
    lease: Lease | None


def target_name(target: Target) -> str:
    """The model as activity and metrics name it."""
    if isinstance(target, LocalTarget):
        return target.model_id
    return f"{target.peer_id}/{target.model}"


@contextlib.contextmanager
def reserved(service: Service, target: Target) -> Iterator[None]:
    """A selector's reservation of its choice while the request runs."""
    if not target.selector:
        yield
        return
    with service.selectors.reserve(target.selector, target_name(target)):
        yield


@contextlib.asynccontextmanager
async def held(
    request: web.Request,
    service: Service,
    target: Target,
    *,
    keep_alive: float | None,
    may_load: bool = True,
) -> AsyncIterator[Held]:
    """The model leased from the router (RoutingError when it cannot be had), or the
    peer to ask."""
    if isinstance(target, PeerTarget):
        admit(target_name(target), target.model)  # peers have no lease: checked here
        peer = service.config.peers[target.peer_id]
        headers = request_headers(request, peer_key=peer.api_key)
        yield Held(Destination(peer.proxy, headers, peer.timeouts), None)
        return
    model = service.config.models[target.model_id]
    async with service.router.lease(
        target.model_id, keep_alive=keep_alive, may_load=may_load
    ) as lease:
        yield Held(Destination(lease.proxy, request_headers(request), model.timeouts), lease)


async def upstream_body(service: Service, target: Target, body: dict[str, Any]) -> bytes:
    """The translated body with the model's (or peer's) rewrites applied."""
    name = str(body.get("model", ""))
    inbound = Inbound(name, encode_json(body), body, bool(body.get("stream")))
    if isinstance(target, LocalTarget):
        rewritten, _ = await local_body(service.config.models[target.model_id], target, inbound)
        return rewritten
    peer = service.config.peers[target.peer_id]
    renamed = target.model if target.model != name else ""
    rewritten, _ = await rewritten_body(inbound, renamed, peer.filters, target.requested)
    return rewritten


@contextlib.contextmanager
def recorded(
    service: Service, request: web.Request, target: Target, exchange: Exchange
) -> Iterator[None]:
    """Publish the request's outcome when it ends, as the `/v1` routes do."""
    started = time.monotonic()
    try:
        yield
    except BaseException as error:  # recorded as the access log has it, then re-raised
        exchange.status = raised_status(error)
        raise
    finally:
        service.bus.publish(
            RequestFinished(
                method=request.method,
                path=request.path,
                model=target_name(target),
                status=exchange.status,
                duration=time.monotonic() - started,
                tail=bytes(exchange.tail[-TAIL_BYTES:]),
                key_id=request_key_id(request),
                recorded=True,
            )
        )
