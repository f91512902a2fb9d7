"""The streaming reverse proxy: bytes in, bytes out, chunk by chunk, nothing buffered.

Hop-by-hop headers are stripped both ways, the path and query are forwarded byte for
byte, and every upstream chunk is written as soon as it arrives. Response bodies pass
through undecoded; request bodies arrive decompressed from aiohttp, so they are sent
plain, without the client's Content-Encoding (Content-Length is always recomputed).
Only a bounded tail of the response is kept, to read token usage after the stream ends
(never per chunk).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp
import anyio
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from llamaswap.config import Timeouts
from llamaswap.runtime.leases import Lease

from . import stalls
from .errors import error_response, sse_error_event
from .relay import CLIENT_CLOSED as CLIENT_CLOSED  # 499, nginx's "client closed request"
from .relay import TAIL_BYTES as TAIL_BYTES  # the bounded tail kept for token usage
from .relay import Broken, keep, open_exchange, relay
from .service import service_of
from .upstream import Origin, split_base, split_url

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Where a client presents an API key (Basic and Bearer both travel in Authorization).
CREDENTIALS = frozenset({"authorization", "x-api-key"})


def _listed_in_connection(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> set[str]:
    """Header names listed in any `Connection` header line (they are hop-by-hop too)."""
    return {
        token.strip().lower()
        for line in headers.getall("Connection", [])
        for token in line.split(",")
    }


# what never goes upstream, by whether apiKeys are set and the body was decoded
_REQUEST_DROPS = {
    (keys, decoded): HOP_BY_HOP
    | {"host", "content-length"}
    | (CREDENTIALS if keys else frozenset())
    | ({"content-encoding"} if decoded else frozenset())
    for keys in (False, True)
    for decoded in (False, True)
}


def upstream_request_headers(
    request: web.Request, *, extra_drop: frozenset[str] = frozenset()
) -> CIMultiDict[str]:
    """The client's headers minus hop-by-hop ones, Host and Content-Length.

    With `apiKeys` configured the client's credentials were for llamaswap, so they are
    dropped (llama-swap does the same); without keys they are the upstream's business.
    """
    headers = request.headers
    drop = _REQUEST_DROPS[bool(service_of(request).config.api_keys), body_was_decoded(request)]
    if extra_drop:
        drop = drop | extra_drop
    if "Connection" in headers:
        drop = drop | _listed_in_connection(headers)
    out: CIMultiDict[str] = CIMultiDict(
        [(name, value) for name, value in headers.items() if name.lower() not in drop]
    )
    peer = request.remote or ""
    forwarded = headers.get("X-Forwarded-For")
    out["X-Forwarded-For"] = f"{forwarded}, {peer}" if forwarded else peer
    return out


def body_was_decoded(request: web.Request) -> bool:
    """Did aiohttp decompress the request body (gzip, deflate, br, zstd)? Then the bytes
    we forward are plain, and the client's Content-Encoding would describe them wrongly.
    The parser's own record is read, not the header: it alone knows which of several
    Content-Encoding lines it honoured (`Request.message` is the deprecated public
    name of the same object)."""
    return request._message.compression is not None


def client_response_headers(upstream: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    drop = HOP_BY_HOP | _listed_in_connection(upstream)
    out: CIMultiDict[str] = CIMultiDict(
        (name, value) for name, value in upstream.items() if name.lower() not in drop
    )
    if "text/event-stream" in upstream.get("Content-Type", ""):
        out["X-Accel-Buffering"] = "no"
    return out


def _as_sent(request: web.Request, exchange: Exchange) -> web.StreamResponse:
    """The response of a client that is gone: whatever was started (nobody reads it)."""
    if exchange.response is not None:
        return exchange.response
    return error_response(request, CLIENT_CLOSED, "the client closed the connection")


def client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def raised_status(error: BaseException) -> int:
    """The status the access log records for a handler that raised `error`: the HTTP
    error's own, 500 for a bug, and 499 (nginx's "client closed request") when the
    handler was cancelled because the client left."""
    if isinstance(error, web.HTTPException):
        return error.status
    if isinstance(error, Exception):
        return 500
    return CLIENT_CLOSED


class Watcher(Protocol):
    """Who follows a forwarded response (the in-flight list): its headers, then its bytes."""

    def headers(self, headers: Mapping[str, str]) -> None: ...

    def sent(self, size: int) -> None: ...


@dataclass
class Exchange:
    """One forwarded request; records how far it got (for error handling and metrics)."""

    response: web.StreamResponse | None = None
    status: int = 0
    is_sse: bool = False
    tail: bytearray = field(default_factory=bytearray)
    watcher: Watcher | None = None


async def forward(
    request: web.Request,
    client: aiohttp.ClientSession,
    url: str,
    body: bytes,
    exchange: Exchange,
    *,
    headers: CIMultiDict[str] | None = None,
    timeouts: Timeouts | None = None,
    prepared: web.StreamResponse | None = None,
) -> web.StreamResponse:
    """Send the request to `url` and stream the answer back to the client.

    With `prepared` (a loading-state stream already sent its 200), the upstream body is
    appended to that response. Transport errors before the answer started become a 502.
    Plain http:// upstreams go through the connection pool (`upstream.py`, `relay.py`);
    HTTPS ones and HEAD requests through `client`, aiohttp's.
    """
    split = split_url(url) if request.method != "HEAD" else None
    return await _forward(request, client, url, split, body, exchange, headers, timeouts, prepared)


async def _forward(
    request: web.Request,
    client: aiohttp.ClientSession,
    url: str,
    split: tuple[Origin, str] | None,
    body: bytes,
    exchange: Exchange,
    headers: CIMultiDict[str] | None,
    timeouts: Timeouts | None,
    prepared: web.StreamResponse | None,
) -> web.StreamResponse:
    """`forward` once the URL is split (None: through aiohttp's client)."""
    send_headers = headers if headers is not None else upstream_request_headers(request)
    exchange.response = prepared
    if split is None:
        return await _forward_with_client(
            request, client, url, body, exchange, send_headers, timeouts, prepared
        )
    pool = service_of(request).upstream_pool
    origin, target = split
    try:
        conn = await open_exchange(
            pool, request.method, origin, target, send_headers, body, timeouts
        )
    except Broken as broken:
        return await end_broken(request, exchange, str(broken), broken.status)
    try:
        return await relay(request, conn, exchange, HOP_BY_HOP, prepared)
    except stalls.ClientStalled:
        return _as_sent(request, exchange)
    except (Broken, aiohttp.ClientError, OSError) as exc:
        if client_gone(request):  # a write to the client failed: nothing upstream broke
            exchange.status = CLIENT_CLOSED
            return _as_sent(request, exchange)
        status = exc.status if isinstance(exc, Broken) else 502
        message = str(exc) if isinstance(exc, Broken) else f"upstream connection lost: {exc}"
        return await end_broken(request, exchange, message, status)
    finally:
        pool.release(conn)


async def _forward_with_client(
    request: web.Request,
    client: aiohttp.ClientSession,
    url: str,
    body: bytes,
    exchange: Exchange,
    send_headers: CIMultiDict[str],
    timeouts: Timeouts | None,
    prepared: web.StreamResponse | None,
) -> web.StreamResponse:
    """`forward` through aiohttp's client (HTTPS upstreams and peers, HEAD requests)."""
    connect = timeouts.connect if timeouts and timeouts.connect > 0 else None
    header_wait = timeouts.response_header if timeouts and timeouts.response_header > 0 else None
    try:
        with anyio.fail_after(header_wait) if header_wait else contextlib.nullcontext():
            upstream_ctx = client.request(
                request.method,
                URL(url, encoded=True),
                headers=send_headers,
                data=body or None,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=None),
            )
            upstream = await upstream_ctx.__aenter__()
    except TimeoutError:
        message = f"upstream sent no response headers within {header_wait:g}s"
        return await end_broken(request, exchange, message, 504)
    except (aiohttp.ClientError, OSError) as exc:
        return await end_broken(request, exchange, f"upstream unreachable: {exc}", 502)
    try:
        exchange.status = upstream.status
        if prepared is None:
            response = web.StreamResponse(
                status=upstream.status,
                reason=upstream.reason,
                headers=client_response_headers(upstream.headers),
            )
            exchange.response = response
            await response.prepare(request)
        else:
            response = prepared
        watcher = exchange.watcher
        if watcher is not None:
            watcher.headers(response.headers)
        exchange.is_sse = "text/event-stream" in upstream.headers.get("Content-Type", "")
        seconds = stalls.write_timeout(request)
        async for chunk in upstream.content.iter_any():
            await stalls.write(request, response, chunk, seconds)
            if watcher is not None:
                watcher.sent(len(chunk))
            keep(exchange, chunk)
        await stalls.write_eof(request, response, seconds)
        return response
    except stalls.ClientStalled:
        return _as_sent(request, exchange)
    except (aiohttp.ClientError, OSError) as exc:
        if client_gone(request):  # a write to the client failed: nothing upstream broke
            exchange.status = CLIENT_CLOSED
            return _as_sent(request, exchange)
        return await end_broken(request, exchange, f"upstream connection lost: {exc}")
    finally:
        await upstream_ctx.__aexit__(None, None, None)


async def forward_leased(
    request: web.Request,
    client: aiohttp.ClientSession,
    lease: Lease,
    path: str,
    body: bytes,
    exchange: Exchange,
    *,
    headers: CIMultiDict[str] | None = None,
    timeouts: Timeouts | None = None,
    prepared: web.StreamResponse | None = None,
) -> web.StreamResponse:
    """`forward` to a leased upstream; a lease the router revokes ends the request."""
    url = lease.proxy.rstrip("/") + path
    split = None
    if request.method != "HEAD":
        base = split_base(lease.proxy) if path.startswith("/") else None
        # the base is parsed once per upstream, not per request
        split = (base[0], base[1] + path) if base is not None else split_url(url)
    if lease.revoked:  # revoked before it started
        return await end_broken(request, exchange, cut_short(lease.model, lease.revoked), 503)
    # the router's revocation cancels this task (Lease.hold): an anyio cancel scope per
    # request costs more than the rest of the lease
    task = asyncio.current_task()
    assert task is not None
    lease.hold(task)
    try:
        return await _forward(
            request, client, url, split, body, exchange, headers, timeouts, prepared
        )
    except asyncio.CancelledError:
        if not lease.unhold() or task.uncancel() > 0:
            raise  # not revoked, or cancelled for another reason too (the client left)
    finally:
        lease.unhold()
    return await end_broken(request, exchange, cut_short(lease.model, lease.revoked), 503)


def cut_short(model: str, reason: str) -> str:
    """The message for a request the router revoked (unload, crash, shutdown)."""
    return f"the request to {model} was cut short: {reason}"


async def end_broken(
    request: web.Request,
    exchange: Exchange,
    message: str,
    status: int = 502,
    code: str | None = None,
) -> web.StreamResponse:
    """End a response whose upstream went away: an error body if nothing was sent yet,
    an SSE error event on an event stream, otherwise cut the connection so the client
    sees a truncated body rather than a silently short one."""
    response = exchange.response
    exchange.status = status
    if response is None or not response.prepared:
        return error_response(request, status, message, code=code)
    if exchange.is_sse or response.headers.get("Content-Type", "").startswith("text/event-stream"):
        seconds = stalls.write_timeout(request)
        with contextlib.suppress(ConnectionError, RuntimeError, stalls.ClientStalled):
            await stalls.write(request, response, sse_error_event(status, message, code), seconds)
            await stalls.write(request, response, b"data: [DONE]\n\n", seconds)
            await stalls.write_eof(request, response, seconds)
        return response
    if request.transport is not None:
        request.transport.close()
    return response
