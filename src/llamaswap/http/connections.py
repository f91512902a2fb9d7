"""Connection limits aiohttp's server lacks: a deadline for the request head, a cap on
open connections, and one short, rate-limited log line per malformed request.

aiohttp reads request heads for as long as a client keeps the connection open (only
its idle keep-alive timer, an hour by default, ever closes it), accepts connections
until the process runs out of file descriptors, and logs each malformed request with
an 11-line traceback. `GuardedSite` serves the same aiohttp application through
`GuardedRequestHandler`, which adds:

- `requestHeaderTimeout`: a connection that has not sent a complete request head
  within that many seconds of opening (or of starting a new request after a
  keep-alive response) is closed, with a 408 when it sent part of one;
- `maxConnections`: a connection beyond the cap is answered at once with a 503 and
  closed, before any of it is parsed, while open connections keep working;
- malformed requests get an OpenAI-shaped 400 and one log line (`bad request from
  127.0.0.1: line too long (limit 8190 bytes)`) through `llamaswap.clients`, whose
  lines are rate-limited (logsetup.RateLimited).

The handler reads a few of RequestHandler's internals (`_request_count`, `_waiter`);
tests/unit/http/test_connections.py pins what it relies on.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import ssl
from collections.abc import Callable
from typing import Any, cast

from aiohttp import web
from aiohttp.http_exceptions import (
    BadHttpMethod,
    BadStatusLine,
    HttpProcessingError,
    InvalidHeader,
    LineTooLong,
)
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from .errors import error_body, error_response
from .policy import Policy

clients_log = logging.getLogger("llamaswap.clients")  # client faults, rate-limited
server_log = logging.getLogger("llamaswap.http.server")  # aiohttp's own (real) errors

REFUSED_LINGER_SECONDS = 1.0  # a refused client has this long to read its 503


class ConnectionGuard:
    """What every connection of one listener shares: the rules of the running config
    and how many connections are open."""

    def __init__(self, policy: Callable[[], Policy]) -> None:
        self.policy = policy
        self.open = 0


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection handler with a request-head deadline, the connection cap
    and short parse-error logs."""

    __slots__ = ("_counted", "_guard", "_head_count", "_head_partial", "_head_timer")

    def __init__(self, manager: Server, *, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._counted = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_count = 0  # requests parsed when the deadline was set
        self._head_partial = False  # part of a request head has arrived

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        policy = self._guard.policy()
        cap = policy.max_connections
        if cap and self._guard.open >= cap:
            _refuse(transport, cap, self._loop)
            return
        self._guard.open += 1
        self._counted = True
        super().connection_made(transport)
        self._set_head_deadline(policy.header_timeout)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._counted:
            self._counted = False
            self._guard.open -= 1
        self._clear_head_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        parsed = self._request_count
        super().data_received(data)
        if self._request_count != parsed:  # a whole request head arrived
            self._head_partial = False
            self._clear_head_deadline()
        elif data:
            self._head_partial = True
            if self._head_timer is None and self._waiting_for_head():
                self._set_head_deadline(self._guard.policy().header_timeout)

    def _waiting_for_head(self) -> bool:
        """Idle between requests: the serving loop waits for the next request head."""
        waiter = self._waiter
        return waiter is not None and not waiter.done()

    def _set_head_deadline(self, seconds: float) -> None:
        if seconds > 0:
            self._head_count = self._request_count
            self._head_timer = self._loop.call_later(seconds, self._head_late, seconds)

    def _clear_head_deadline(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self, seconds: float) -> None:
        self._head_timer = None
        if self._request_count != self._head_count or not self._waiting_for_head():
            return  # a head arrived, or a request is being served
        transport = self.transport
        peer = _peer(transport)
        clients_log.info(
            "closed a connection from %s: no complete request head within %g s", peer, seconds
        )
        if transport is not None and self._head_partial:
            transport.write(_head_timeout_response(seconds))
        self.force_close()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A request the parser refused: one rate-limited line and a JSON 4xx (aiohttp
        logs a traceback and answers in plain text). Other errors go to aiohttp."""
        if not isinstance(exc, HttpProcessingError) or not 400 <= status < 500:
            return super().handle_error(request, status, exc, message)
        reason = describe(exc)
        clients_log.info("bad request from %s: %s", request.remote or "-", reason)
        if request.writer.output_size > 0:  # as aiohttp: too late for an answer
            raise ConnectionError("response already started; cannot send the error")
        response = error_response(None, status, f"bad request: {reason}")
        response.force_close()
        return response


def describe(exc: HttpProcessingError) -> str:
    """A parse error in a few words, without echoing the client's bytes back at length."""
    if isinstance(exc, LineTooLong):
        return f"line too long (limit {exc.args[1]} bytes)"
    if isinstance(exc, BadHttpMethod):
        return "HTTPS sent to the HTTP port" if "HTTPS" in exc.message else "bad method"
    if isinstance(exc, BadStatusLine):
        return "bad request line"
    if isinstance(exc, InvalidHeader):
        return "invalid header"
    lines = exc.message.strip().splitlines()
    text = lines[0].rstrip(":. ") if lines else type(exc).__name__
    if not text.isprintable():
        text = repr(text)[1:-1]
    return text[:100]


def _peer(transport: asyncio.BaseTransport | None) -> str:
    peername = transport.get_extra_info("peername") if transport is not None else None
    return str(peername[0]) if isinstance(peername, tuple) and peername else "-"


def _raw_response(status: int, reason: str, message: str, code: str, *extra: str) -> bytes:
    body = json.dumps(error_body(status, message, code)).encode()
    head = [
        f"HTTP/1.1 {status} {reason}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *extra,
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@functools.lru_cache(maxsize=8)
def _busy_response(cap: int) -> bytes:
    message = f"too many connections (maxConnections is {cap}); try again shortly"
    return _raw_response(
        503, "Service Unavailable", message, "too_many_connections", "Retry-After: 1"
    )


@functools.lru_cache(maxsize=8)
def _head_timeout_response(seconds: float) -> bytes:
    message = f"no complete request head within {seconds:g} s (requestHeaderTimeout)"
    return _raw_response(408, "Request Timeout", message, "request_timeout")


class _Refused(asyncio.Protocol):
    """A connection over the cap: answered 503 at once, closed when the client has read
    it (or after REFUSED_LINGER_SECONDS); nothing it sends is parsed."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._timer = self._loop.call_later(REFUSED_LINGER_SECONDS, transport.close)

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False  # the client is done: close

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._timer is not None:
            self._timer.cancel()


def _refuse(base: asyncio.BaseTransport, cap: int, loop: asyncio.AbstractEventLoop) -> None:
    transport = cast(asyncio.Transport, base)  # uvloop's is one, without the base class
    clients_log.warning(
        "refused a connection from %s: %d connections open (maxConnections)",
        _peer(transport),
        cap,
    )
    refused = _Refused(loop)
    transport.set_protocol(refused)
    refused.connection_made(transport)
    transport.write(_busy_response(cap))
    if transport.can_write_eof():
        transport.write_eof()  # FIN after the answer; the client's bytes are still read


class GuardedSite(web.BaseSite):
    """A TCP listener like aiohttp's TCPSite whose connections get GuardedRequestHandler."""

    __slots__ = ("_guard", "_handler_args", "_host", "_port")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        guard: ConnectionGuard,
        backlog: int = 128,
        ssl_context: ssl.SSLContext | None = None,
        **handler_args: Any,
    ) -> None:
        super().__init__(runner, backlog=backlog, ssl_context=ssl_context)
        self._host = host
        self._port = port
        self._guard = guard
        self._handler_args = {"logger": server_log, **handler_args}

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None, "runner.setup() comes first"

        def accept() -> GuardedRequestHandler:
            return GuardedRequestHandler(server, guard=self._guard, loop=loop, **self._handler_args)

        self._server = await loop.create_server(
            accept, self._host, self._port, backlog=self._backlog, ssl=self._ssl_context
        )
