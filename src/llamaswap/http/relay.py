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
from .pool import UpstreamPool
from .sent import SentResponse
from .upstream import (
    IDEMPOTENT,
    HeadTimeout,
    Origin,
    UpstreamConnection,
    UpstreamDisconnected,
    UpstreamError,
    encode_request,
)

if TYPE_CHECKING:
    from .proxy import Exchange

LARGE_PIECE = 16 * 1024  # framed with writelines (no copy) from this size
TAIL_BYTES = 16 * 1024  # the end of each answer is kept, for token usage
CLIENT_CLOSED = 499  # nginx's "client closed request"


_NAMES: dict[bytes, tuple[str, str]] = {}  # header name -> (as sent, lowered), bounded
_NAMES_KEPT = 512


def _name(raw: bytes) -> tuple[str, str]:
    known = _NAMES.get(raw)
    if known is None:
        key = raw.decode("latin-1")
        known = (key, key.lower())
        if len(_NAMES) < _NAMES_KEPT:  # the names come from upstreams: keep a bounded set
            _NAMES[raw] = known
    return known


def copy_headers(
    into: CIMultiDict[str], raw: list[tuple[bytes, bytes]], hop_by_hop: frozenset[str]
) -> bool:
    """Add the upstream's headers for the client, minus hop-by-hop ones and those its
    Connection header lists; returns whether the answer is an event stream."""
    kept: list[tuple[str, str, str]] = []
    listed: set[str] | None = None
    for name, value in raw:
        key, lowered = _name(name)
        if lowered in hop_by_hop:
            if lowered == "connection":
                tokens = value.decode("latin-1").split(",")
                listed = (listed or set()) | {token.strip().lower() for token in tokens}
            continue
        kept.append((key, value.decode("utf-8", "surrogateescape"), lowered))
    if listed:  # the names the Connection header lists are hop-by-hop too
        into.extend([(key, text) for key, text, lowered in kept if lowered not in listed])
    else:
        into.extend([(key, text) for key, text, _ in kept])
    is_sse = "text/event-stream" in into.get("Content-Type", "")
    if is_sse:
        into["X-Accel-Buffering"] = "no"
    return is_sse


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
    watcher = exchange.watcher
    seconds = stalls.write_timeout(request)
    reason = conn.reason.decode("utf-8", "surrogateescape")
    if prepared is None and conn.complete and conn.error is None:
        return await _whole(request, conn, exchange, reason, hop_by_hop, seconds)
    response = prepared
    if response is None:
        response = web.StreamResponse(status=conn.status, reason=reason)
        exchange.is_sse = copy_headers(response.headers, conn.raw_headers, hop_by_hop)
        exchange.response = response
    else:
        exchange.is_sse = "text/event-stream" in _content_type(conn.raw_headers)
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
    await stalls.write_eof(request, response, seconds)
    return response


async def _whole(
    request: web.Request,
    conn: UpstreamConnection,
    exchange: Exchange,
    reason: str,
    hop_by_hop: frozenset[str],
    seconds: float | None,
) -> web.StreamResponse:
    """An answer that arrived whole: head and body in one write, with its length."""
    body = b"".join(conn.pending) if len(conn.pending) != 1 else conn.pending[0]
    response = SentResponse(conn.status, reason)
    exchange.is_sse = copy_headers(response.headers, conn.raw_headers, hop_by_hop)
    exchange.response = response
    await response.send(request, body)
    if request.protocol.writing_paused:
        await stalls.within(request, seconds, request.writer.drain())
    watcher = exchange.watcher
    if watcher is not None:
        watcher.headers(response.headers)
        if body:
            watcher.sent(len(body))
    if body:
        keep(exchange, body)
    return response


def _content_type(raw: list[tuple[bytes, bytes]]) -> str:
    for name, value in raw:
        if name.lower() == b"content-type":
            return value.decode("latin-1")
    return ""
