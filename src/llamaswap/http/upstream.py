"""Keep-alive HTTP/1.1 connections to upstreams, parsed with httptools (llhttp).

aiohttp's client is general-purpose: per request it builds a ClientRequest, a URL, a
ClientResponse and a StreamReader, and wakes the reading task once per chunk. A proxy
needs less: write the request head and body at once, parse the answer with a
maintained C parser, and hand each body piece to whoever relays it. `relay.py` attaches
a sink that writes straight to the client's transport from the parser callback, so a
streamed chunk costs no task switch; its task wakes only for the head, for
backpressure and at the end. `pool.py` keeps the connections alive between requests.

Plain `http://` without credentials in the URL; everything else (and HEAD, whose
answer httptools cannot frame) goes through aiohttp's client.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httptools
from multidict import CIMultiDict
from yarl import URL

if TYPE_CHECKING:
    from .pool import UpstreamPool

# aiohttp's client added these to what the caller gave; upstreams have always seen them
BODY_METHODS = frozenset({"PATCH", "POST", "PUT"})
NO_LENGTH_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
WRITELINES_FROM = 16 * 1024  # bodies at least this large are not copied into the head
MAX_HEAD_BYTES = 64 * 1024  # status line and headers of one answer

log = logging.getLogger("llamaswap.http")

Sink = Callable[[bytes], None]


class UpstreamError(Exception):
    """The upstream could not be reached, or broke the exchange."""


class UpstreamDisconnected(UpstreamError):
    """The connection closed before the answer was complete."""


class HeadTimeout(Exception):
    """No response head within `responseHeader` seconds."""


class HeadTooLarge(Exception):
    """The response head is past MAX_HEAD_BYTES (aiohttp's client had line limits)."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where to connect, and the Host header aiohttp sent for it."""

    host: str
    port: int
    host_header: str


@functools.lru_cache(maxsize=1024)
def _origin(netloc: str) -> Origin | None:
    if "@" in netloc or not netloc:
        return None
    url = URL("http://" + netloc)
    host, port, header = url.raw_host, url.port, url.host_port_subcomponent
    if not host or port is None or header is None:
        return None
    return Origin(host, port, header)


def split_url(url: str) -> tuple[Origin, str] | None:
    """(origin, raw path and query) of a plain http:// URL; None for anything else."""
    if not url.startswith("http://"):
        return None
    rest = url[7:]
    cut = len(rest)
    for mark in ("/", "?", "#"):
        found = rest.find(mark)
        if 0 <= found < cut:
            cut = found
    origin = _origin(rest[:cut])
    if origin is None:
        return None
    target = rest[cut:].split("#", 1)[0]
    if not target.startswith("/"):
        target = "/" + target
    return origin, target


@functools.lru_cache(maxsize=1024)
def split_base(base: str) -> tuple[Origin, str] | None:
    """(origin, path prefix without a trailing slash) of an upstream's base URL (a
    model's `proxy`); None when it is not plain http:// or carries a query."""
    split = split_url(base.rstrip("/"))
    if split is None or "?" in split[1] or "#" in base:
        return None
    origin, prefix = split
    return origin, prefix.rstrip("/")


def encode_request(
    method: str, target: str, origin: Origin, headers: CIMultiDict[str], body: bytes
) -> bytes:
    """The request head as aiohttp's client wrote it: Host first (the caller's, if it
    gave one), the caller's headers in order, then `Accept: */*`, `Content-Length`
    and `Content-Type: application/octet-stream` where aiohttp added them."""
    if "Host" in headers:  # passthrough routes send the client's own
        host = headers["Host"]
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
        lines += [f"{name}: {value}" for name, value in headers.items() if name.lower() != "host"]
    else:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {origin.host_header}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
    if "Accept" not in headers:
        lines.append("Accept: */*")
    if body or method not in NO_LENGTH_METHODS:
        lines.append(f"Content-Length: {len(body)}")
    if (body or method in BODY_METHODS) and "Content-Type" not in headers:
        lines.append("Content-Type: application/octet-stream")
    lines.append("\r\n")
    head = "\r\n".join(lines)
    # a CR, LF or NUL inside a name or value would smuggle a header (aiohttp refuses too)
    if head.count("\n") != len(lines) or head.count("\r") != len(lines) or "\x00" in head:
        raise ValueError("forbidden control character in a request header")
    return head.encode("utf-8", "surrogateescape")


class UpstreamConnection(asyncio.Protocol):
    """One connection; it reads one answer at a time, for the request that holds it.

    The parser callbacks record the head, then hand body pieces to `sink` (or keep
    them in `pending` until one is attached). `wait()` returns whenever something the
    holder must act on happened: the head, the end, an error, or a paused sink.
    """

    def __init__(self, pool: UpstreamPool, origin: Origin, loop: asyncio.AbstractEventLoop) -> None:
        self._pool = pool
        self._loop = loop  # kept: on Python 3.11 each get_running_loop() is a getpid()
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self.idle_since = 0.0
        self.busy = False
        self.reused = False
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.reason = b""
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.received = False  # any byte of the answer arrived
        self.error: BaseException | None = None
        self.pending: list[bytes] = []
        self.sink: Sink | None = None
        self.reading_paused = False
        self._interim = False
        self._batch: list[bytes] | None = None  # pieces of the read being parsed
        self._head_bytes = 0

    # -- the holder's side -----------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def send(self, data: bytes, body: bytes, head_timeout: float | None) -> None:
        """Write one request; the answer is read into this connection's state."""
        self._reset()
        assert self.transport is not None
        if len(body) >= WRITELINES_FROM:
            self.transport.writelines((data, body))
        else:
            self.transport.write(data + body)
        if head_timeout:
            self._head_timer = self._loop.call_later(head_timeout, self._head_late)

    async def wait(self) -> None:
        """Until the head, the end, an error or a pause happens (returns at once if one
        is pending)."""
        if self._ready():
            return
        waiter = self._waiter = self._loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def _ready(self) -> bool:
        return (
            self.error is not None
            or self.complete
            or (self.head_done and self.sink is None)
            or self.reading_paused
        )

    def attach(self, sink: Sink) -> None:
        """From now on body pieces go to `sink` as they are parsed; those kept so far
        first."""
        pending, self.pending = self.pending, []
        if pending:
            sink(pending[0] if len(pending) == 1 else b"".join(pending))
        self.sink = sink

    def pause(self) -> None:
        """Stop reading the upstream (the client is not keeping up); `wait()` returns."""
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()
            self._wake()

    def resume(self) -> None:
        if self.reading_paused:
            self.reading_paused = False
            if self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.busy or self.complete or self.error is not None:
            self.abort()  # nobody asked: an idle connection must stay silent
            return
        self.received = True
        # the pieces parsed from one read go to the sink together: a read holding
        # several chunks of a stream costs the client one write, not one each
        batch = self._batch = []
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            self._flush(batch)
            cause = exc.__context__ or exc
            if not isinstance(cause, HeadTooLarge):
                log.error("relaying an upstream answer failed", exc_info=cause)
            self._fail(UpstreamError(f"cannot relay the response: {cause}"))
            self.abort()
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._flush(batch)
            self._fail(UpstreamError(f"malformed response: {exc!r}"))
            self.abort()
        else:
            self._flush(batch)

    def _flush(self, batch: list[bytes]) -> None:
        self._batch = None
        sink = self.sink
        if batch and sink is not None:
            sink(batch[0] if len(batch) == 1 else b"".join(batch))

    def eof_received(self) -> bool:
        if self.busy and self.head_done and not self.complete and self._ends_at_eof():
            self._message_complete(keep_alive=False)
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.busy and not self.complete and self.error is None:
            if self.head_done and self._ends_at_eof():
                self._message_complete(keep_alive=False)
            else:
                reason = f": {exc}" if exc else ""
                self._fail(UpstreamDisconnected(f"the upstream closed the connection{reason}"))
        self._pool.lost(self)

    def pause_writing(self) -> None:
        pass  # request bodies are already in memory: nothing to hold back

    def resume_writing(self) -> None:
        pass

    # -- httptools callbacks ---------------------------------------------------------

    def on_status(self, reason: bytes) -> None:
        self.reason += reason
        self._head_bytes += len(reason)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name, value))
        self._head_bytes += len(name) + len(value)
        if self._head_bytes > MAX_HEAD_BYTES:
            raise HeadTooLarge(f"response head larger than {MAX_HEAD_BYTES} bytes")

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:  # 100 Continue and friends: not the answer
            self._interim = True
            self.raw_headers = []
            self.reason = b""
            self._head_bytes = 0
            return
        self.status = status
        self.head_done = True
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.sink is None:
            self.pending.append(body)
        elif self._batch is not None:
            self._batch.append(body)
        else:
            self.sink(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self._message_complete(self._parser.should_keep_alive())

    # -- internals ----------------------------------------------------------------------

    def _message_complete(self, keep_alive: bool) -> None:
        self.complete = True
        self.keep_alive = keep_alive
        self._wake()

    def _ends_at_eof(self) -> bool:
        """Is this a body delimited by the connection closing (no length, not chunked)?"""
        for name, value in self.raw_headers:
            lowered = name.lower()
            if lowered == b"content-length" or (
                lowered == b"transfer-encoding" and b"chunked" in value.lower()
            ):
                return False
        return True

    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self._wake()

    def _head_late(self) -> None:
        self._head_timer = None
        if not self.head_done:
            self._fail(HeadTimeout())

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def finish(self) -> None:
        """The holder is done with this exchange (whatever its outcome)."""
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self.sink = None
        self.pending = []
