"""One translated request to an upstream (a leased local model or a peer).

The same transport rules as the byte proxy (`http/proxy.py`): the shared client
session, the model's connect and response-header timeouts, the client's headers minus
hop-by-hop ones (and, for a peer, minus the client's credentials). The body is new
JSON, so the headers that described the client's body go, and no compression is asked
for: the answer is parsed here, not passed through. The end of the raw answer is kept
in the `Exchange`, so `RequestFinished` carries the upstream's usage and timings as
the byte proxy's does (metrics and the UI read them from there).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import anyio
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from llamaswap.config import Timeouts

from ..proxy import CREDENTIALS, TAIL_BYTES, Exchange, upstream_request_headers
from .from_openai import error_message
from .sse import SseDecoder, chunk_of

# Headers of the client's request that describe its body or its wishes for ours.
REPLACED = frozenset({"accept", "accept-encoding", "content-type", "content-encoding"})
ERROR_BODY_LIMIT = 64 * 1024


class UpstreamError(Exception):
    """The upstream failed or refused: the status and message to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Destination:
    """Where a translated request goes and how."""

    base: str  # the upstream's root URL (a lease's proxy, or a peer's)
    headers: CIMultiDict[str]
    timeouts: Timeouts | None


def request_headers(request: web.Request, *, peer_key: str | None = None) -> CIMultiDict[str]:
    """The client's headers for a new JSON body; for a peer (`peer_key` given, maybe
    ""), the client's credentials are replaced by the peer's own key or none."""
    drop = REPLACED | (CREDENTIALS if peer_key is not None else frozenset())
    headers = upstream_request_headers(request, extra_drop=drop)
    headers["Content-Type"] = "application/json"
    if peer_key:
        headers["Authorization"] = f"Bearer {peer_key}"
        headers["x-api-key"] = peer_key
    return headers


@contextlib.asynccontextmanager
async def opened(
    client: aiohttp.ClientSession, destination: Destination, path: str, body: bytes
) -> AsyncIterator[aiohttp.ClientResponse]:
    """POST `body` to the upstream; yields its answer once it is a success. Raises
    UpstreamError with the upstream's own status and message when it refuses, 502 when
    it cannot be reached and 504 when its headers do not come in time."""
    timeouts = destination.timeouts
    connect = timeouts.connect if timeouts and timeouts.connect > 0 else None
    header_wait = timeouts.response_header if timeouts and timeouts.response_header > 0 else None
    url = destination.base.rstrip("/") + path
    try:
        with anyio.fail_after(header_wait) if header_wait else contextlib.nullcontext():
            context = client.post(
                URL(url, encoded=True),
                headers=destination.headers,
                data=body,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=None),
            )
            response = await context.__aenter__()
    except TimeoutError:
        message = f"upstream sent no response headers within {header_wait:g}s"
        raise UpstreamError(504, message) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise UpstreamError(502, f"upstream unreachable: {exc}") from None
    try:
        if response.status >= 400:
            raise UpstreamError(response.status, await _refusal(response))
        yield response
    finally:
        await context.__aexit__(None, None, None)


async def _refusal(response: aiohttp.ClientResponse) -> str:
    try:
        raw = await response.content.read(ERROR_BODY_LIMIT)
    except (aiohttp.ClientError, OSError) as exc:
        return f"upstream answered {response.status} and then failed: {exc}"
    text = raw.decode("utf-8", "replace")
    try:
        return error_message(json.loads(text))
    except ValueError:
        return text.strip() or f"upstream answered {response.status}"


def _keep_tail(exchange: Exchange, chunk: bytes) -> None:
    tail = exchange.tail
    tail += chunk
    if len(tail) > 2 * TAIL_BYTES:
        del tail[:-TAIL_BYTES]


async def events(response: aiohttp.ClientResponse, exchange: Exchange) -> AsyncIterator[Any]:
    """The JSON chunks of an SSE answer, as they arrive (a plain JSON answer, from an
    upstream that ignored `stream`, comes as one chunk)."""
    decoder = SseDecoder()
    streamed = "text/event-stream" in response.headers.get("Content-Type", "")
    whole = bytearray()
    try:
        async for raw in response.content.iter_any():
            _keep_tail(exchange, raw)
            if not streamed:
                whole += raw
                continue
            for payload in decoder.feed(raw):
                chunk = chunk_of(payload)
                if chunk is not None:
                    yield chunk
    except (aiohttp.ClientError, OSError) as exc:
        raise UpstreamError(502, f"upstream connection lost: {exc}") from None
    if not streamed:
        try:
            yield json.loads(bytes(whole))
        except ValueError:
            raise UpstreamError(502, "the upstream's answer is not JSON") from None
        return
    for payload in decoder.close():
        chunk = chunk_of(payload)
        if chunk is not None:
            yield chunk


async def document(response: aiohttp.ClientResponse, exchange: Exchange) -> Any:
    """A whole JSON answer (embeddings)."""
    try:
        raw = await response.read()
    except (aiohttp.ClientError, OSError) as exc:
        raise UpstreamError(502, f"upstream connection lost: {exc}") from None
    _keep_tail(exchange, raw[-2 * TAIL_BYTES :])
    try:
        return json.loads(raw)
    except ValueError:
        raise UpstreamError(502, "the upstream's answer is not JSON") from None
