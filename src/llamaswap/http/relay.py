"""The fast forwarding path: one exchange on a pooled upstream connection, relayed to
the client as it arrives.

An answer that is complete when its head is read (most non-streamed answers) goes out
in one write, head and body together. Otherwise the head is sent at once and every body
piece is written to the client's transport from the upstream parser's callback (the
client's framing, chunked or not, and aiohttp's byte count kept), so the handler task
wakes only when the client stops keeping up (the upstream is paused and the write
waits, within `clientWriteTimeout`), at the end, or on an error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from multidict import CIMultiDict

from llamaswap.config import Timeouts

from . import stalls
from .upstream import (
    IDEMPOTENT,
    HeadTimeout,
    Origin,
    UpstreamConnection,
    UpstreamDisconnected,
    UpstreamError,
    UpstreamPool,
    encode_request,
)

if TYPE_CHECKING:
    from .proxy import Exchange, Watcher

LARGE_PIECE = 16 * 1024  # framed with writelines (no copy) from this size
TAIL_BYTES = 16 * 1024  # the end of each answer is kept, for token usage
HEAD_ALLOWANCE = 2048  # bytes a response head may add to a write (for the stall rule)
CLIENT_CLOSED = 499  # nginx's "client closed request"


def response_headers(
    raw: list[tuple[bytes, bytes]], hop_by_hop: frozenset[str]
) -> tuple[CIMultiDict[str], bool]:
    """The upstream's headers for the client, minus hop-by-hop ones and those its
    Connection header lists; and whether the answer is an event stream."""
    decoded: list[tuple[str, str, str]] = []
    listed: set[str] = set()
    for name, value in raw:
        text = value.decode("utf-8", "surrogateescape")
        key = name.decode("latin-1")
        lowered = key.lower()
        if lowered == "connection":
            listed.update(token.strip().lower() for token in text.split(","))
        decoded.append((key, text, lowered))
    drop = hop_by_hop | listed if listed else hop_by_hop
    out: CIMultiDict[str] = CIMultiDict(
        (key, text) for key, text, lowered in decoded if lowered not in drop
    )
    is_sse = "text/event-stream" in out.get("Content-Type", "")
    if is_sse:
        out["X-Accel-Buffering"] = "no"
    return out, is_sse


class Broken(Exception):
    """The exchange failed; `status` and the message say how (proxy.py answers)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


async def open_exchange(
    pool: UpstreamPool,
    method: str,
    origin: Origin,
    target: str,
    headers: CIMultiDict[str],
    body: bytes,
    timeouts: Timeouts | None,
) -> UpstreamConnection:
    """Send the request and wait for the answer's head; raises Broken. The connection
    returned must go back with `pool.release` (the caller does, whatever happens)."""
    head = encode_request(method, target, origin, headers, body)
    connect = timeouts.connect if timeouts and timeouts.connect > 0 else None
    header_wait = timeouts.response_header if timeouts and timeouts.response_header > 0 else None
    for attempt in (1, 2):
        try:
            conn = await pool.acquire(origin, connect, fresh=attempt == 2)
        except UpstreamError as exc:
            raise Broken(f"upstream unreachable: {exc}", 502) from None
        try:
            conn.send(head, body, header_wait)
            await conn.wait()
        except BaseException:
            pool.release(conn)
            raise
        error = conn.error
        if error is None:
            return conn
        pool.release(conn)
        if isinstance(error, HeadTimeout):
            raise Broken(f"upstream sent no response headers within {header_wait:g}s", 504)
        # a kept-alive connection the upstream had just closed: aiohttp's client tried
        # idempotent requests once more on a fresh one, and so do we
        stale = conn.reused and not conn.received and isinstance(error, UpstreamDisconnected)
        if not (stale and method in IDEMPOTENT and attempt == 1):
            raise Broken(f"upstream unreachable: {error}", 502)
    raise AssertionError("unreachable")


class ClientSink:
    """Writes body pieces to the client as the upstream parser hands them over."""

    __slots__ = ("_conn", "_exchange", "_protocol", "_transport", "_writer", "chunked", "gone")

    def __init__(
        self,
        request: web.Request,
        writer: AbstractStreamWriter,
        chunked: bool,
        exchange: Exchange,
        conn: UpstreamConnection,
    ) -> None:
        self._transport = request.transport
        self._protocol = request.protocol
        self._writer = writer
        self._exchange = exchange
        self._conn = conn
        self.chunked = chunked
        self.gone = False

    def __call__(self, data: bytes) -> None:
        size = len(data)
        transport = self._transport
        if not size or self.gone:
            return
        if transport is None or transport.is_closing():
            self.gone = True  # the client left: stop reading, the handler ends it
            self._conn.pause()
            return
        if not self.chunked:
            transport.write(data)
            written = size
        elif size < LARGE_PIECE:
            framed = b"%x\r\n%b\r\n" % (size, data)
            transport.write(framed)
            written = len(framed)
        else:
            prefix = b"%x\r\n" % size
            transport.writelines((prefix, data, b"\r\n"))
            written = len(prefix) + size + 2
        self._writer.output_size += written
        exchange = self._exchange
        watcher = exchange.watcher
        if watcher is not None:
            watcher.sent(size)
        keep(exchange, data)
        if self._protocol.writing_paused:
            self._conn.pause()


def keep(exchange: Exchange, data: bytes) -> None:
    """Add to the bounded tail read for token usage."""
    tail = exchange.tail
    tail += data
    if len(tail) > 2 * TAIL_BYTES:
        del tail[:-TAIL_BYTES]


async def relay(
    request: web.Request,
    conn: UpstreamConnection,
    exchange: Exchange,
    hop_by_hop: frozenset[str],
    prepared: web.StreamResponse | None,
) -> web.StreamResponse:
    """Send the answer whose head `conn` has read to the client. Raises Broken when the
    upstream fails mid-answer; returns the response otherwise (also when the client
    left or stalled: `exchange.status` says so)."""
    exchange.status = conn.status
    headers, exchange.is_sse = response_headers(conn.raw_headers, hop_by_hop)
    watcher = exchange.watcher
    seconds = stalls.write_timeout(request)
    if prepared is None and conn.complete and conn.error is None:
        return await _whole(request, conn, exchange, headers, watcher, seconds)
    response = prepared
    if response is None:
        reason = conn.reason.decode("utf-8", "surrogateescape")
        response = web.StreamResponse(status=conn.status, reason=reason, headers=headers)
        exchange.response = response
    writer = await response.prepare(request)
    assert writer is not None, "a response the client is still reading"
    if watcher is not None:
        watcher.headers(response.headers)
    chunked = response.headers.get("Transfer-Encoding", "") == "chunked"
    sink = ClientSink(request, writer, chunked, exchange, conn)
    conn.attach(sink)
    while True:
        if sink.gone:
            exchange.status = CLIENT_CLOSED
            return response
        if conn.error is not None:
            raise Broken(f"upstream connection lost: {conn.error}", 502)
        if conn.complete:
            break
        if conn.reading_paused:
            await stalls.within(request, seconds, writer.drain())
            conn.resume()
            continue
        await conn.wait()
    await _eof(request, response, seconds)
    return response


async def _whole(
    request: web.Request,
    conn: UpstreamConnection,
    exchange: Exchange,
    headers: CIMultiDict[str],
    watcher: Watcher | None,
    seconds: float | None,
) -> web.StreamResponse:
    """An answer that arrived whole: head and body in one write, with its length."""
    body = b"".join(conn.pending) if len(conn.pending) != 1 else conn.pending[0]
    headers.popall("Content-Length", None)
    reason = conn.reason.decode("utf-8", "surrogateescape")
    response = web.Response(status=conn.status, reason=reason, headers=headers, body=body)
    exchange.response = response
    await response.prepare(request)
    if watcher is not None:
        watcher.headers(response.headers)
    await _eof(request, response, seconds, len(body) + HEAD_ALLOWANCE)
    if body:
        if watcher is not None:
            watcher.sent(len(body))
        keep(exchange, body)
    return response


async def _eof(
    request: web.Request, response: web.StreamResponse, seconds: float | None, size: int = 8
) -> None:
    """`write_eof`, with the write-timeout timer only when the write may have to wait."""
    if seconds is None or stalls.cannot_wait(request, size):
        await response.write_eof()
    else:
        await stalls.write_eof(request, response, seconds)
