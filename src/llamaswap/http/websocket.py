"""WebSocket upgrades through the proxy: one socket to the client, one to the upstream,
frames relayed both ways until either side closes.

Rules:

1. A request is an upgrade when `Connection` lists `upgrade` and `Upgrade` lists
   `websocket` (llama-swap's test, case-insensitive, comma lists), and it is a GET (no
   other method can be upgraded; anything else is proxied as plain HTTP).
2. The upstream handshake happens first: the client gets its 101 only once the upstream
   has accepted, with the subprotocol the upstream chose. An upstream that refuses gets
   its status passed on (a refusal below 400 becomes 502); one that cannot be reached is
   a 502.
3. Text, binary, ping and pong frames are relayed as they are (neither side answers pings
   itself, so a ping is answered by the far end). A close frame is relayed with its code
   and reason, and the far end's answer goes back to the side that closed first.
4. A side that vanishes without a close frame, or a relay cut short from outside (its
   lease revoked, its model stopped, llamaswap shutting down), closes the other side
   with 1001 (going away).
5. Writes to the client are bounded by `clientWriteTimeout` like any other answer, so a
   client that stops reading cannot hold a model forever.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
import anyio
from aiohttp import WSCloseCode, WSMsgType, web
from multidict import CIMultiDict
from yarl import URL

from . import stalls
from .errors import error_response
from .proxy import upstream_request_headers

HANDSHAKE_HEADERS = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-accept",
    }
)
CLOSE_SECONDS = 5.0  # for the closing handshakes once the relay has ended
# codes that must never be sent in a close frame (RFC 6455 §7.4.1)
RESERVED_CODES = frozenset({1004, 1005, 1006, 1015})


def _lists(values: Iterable[str], token: str) -> bool:
    return any(part.strip().lower() == token for value in values for part in value.split(","))


def is_upgrade(request: web.Request) -> bool:
    """Does the client ask for a websocket (rule 1)?"""
    headers = request.headers
    return (
        request.method == "GET"
        and _lists(headers.getall("Connection", []), "upgrade")
        and _lists(headers.getall("Upgrade", []), "websocket")
    )


def offered_protocols(request: web.Request) -> list[str]:
    """The subprotocols the client offers (Sec-WebSocket-Protocol)."""
    return [
        p.strip()
        for line in request.headers.getall("Sec-WebSocket-Protocol", [])
        for p in line.split(",")
        if p.strip()
    ]


def handshake_problem(request: web.Request) -> str | None:
    """Why the client's upgrade cannot be accepted as sent (a 400), or None."""
    if not web.WebSocketResponse(protocols=offered_protocols(request)).can_prepare(request):
        return "malformed websocket handshake (Sec-WebSocket-Key or -Version missing or invalid)"
    return None


def sendable(code: int | None) -> int:
    """A close code that may go on the wire (a missing or reserved one becomes 1000)."""
    if code is None or code in RESERVED_CODES or not (1000 <= code <= 4999):
        return WSCloseCode.OK
    return code


@dataclass(frozen=True)
class Ending:
    """How a relay direction ended: the side it read from sent `code` (a close frame), or
    vanished (`code` None)."""

    side: str  # "client" or "upstream"
    code: int | None = None
    reason: str = ""


class Bridge:
    """An accepted websocket on both sides; `relay` moves frames until one side ends."""

    def __init__(
        self,
        request: web.Request,
        client: web.WebSocketResponse,
        upstream: aiohttp.ClientWebSocketResponse,
    ) -> None:
        self.request = request
        self.client = client
        self.upstream = upstream
        self.ending: Ending | None = None
        self._scope = anyio.CancelScope()
        self._closed = False  # both closing handshakes are done

    async def relay(self, why_cut: Callable[[], str] = str) -> None:
        """Relay until a side closes, then close both sides (rules 3 and 4). Cancelled from
        outside (`cut`, or an enclosing scope), it closes both with 1001 and `why_cut()`
        as the reason. Never raises for a broken side."""
        try:
            with self._scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._pump, self.client, "client")
                    tg.start_soon(self._pump, self.upstream, "upstream")
        finally:
            if not self._closed:
                if self.ending is None:
                    self.ending = Ending("llamaswap", WSCloseCode.GOING_AWAY, why_cut())
                with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_SECONDS):
                    await self._close_both()

    def cut(self, reason: str) -> None:
        """End the relay from outside (never blocks): both sides get 1001 and `reason`."""
        if self.ending is None:
            self.ending = Ending("llamaswap", WSCloseCode.GOING_AWAY, reason)
        self._scope.cancel()

    async def _pump(
        self, source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse, side: str
    ) -> None:
        """Copy one direction; the first to end runs both closing handshakes. Closing a
        socket wakes the other pump's `receive` (aiohttp allows it from another task),
        so that pump ends too, and nothing is cancelled in the middle of a handshake."""
        ending = await self._copy(source, side)
        if self.ending is None:
            self.ending = ending
            with anyio.move_on_after(CLOSE_SECONDS):
                await self._close_both()

    async def _copy(
        self, source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse, side: str
    ) -> Ending:
        sink_side = "upstream" if side == "client" else "client"
        while True:
            message = await source.receive()
            kind = message.type
            if kind is WSMsgType.CLOSE:
                return Ending(side, int(message.data), str(message.extra or ""))
            if kind not in (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.PING, WSMsgType.PONG):
                return Ending(side)  # CLOSING, CLOSED, ERROR: the source is gone
            try:
                await self._send(sink_side, kind, message.data)
            except (ConnectionError, RuntimeError, aiohttp.ClientError, stalls.ClientStalled):
                return Ending(sink_side)

    async def _send(self, side: str, kind: WSMsgType, data: Any) -> None:
        """One frame to `side`: `data` is the str of a text frame, else bytes."""
        sink = self.client if side == "client" else self.upstream
        if kind is WSMsgType.TEXT:
            sending = sink.send_str(data)
        elif kind is WSMsgType.BINARY:
            sending = sink.send_bytes(data)
        elif kind is WSMsgType.PING:
            sending = sink.ping(data)
        else:
            sending = sink.pong(data)
        if side == "client":
            await stalls.within(self.request, stalls.write_timeout(self.request), sending)
        else:
            await sending

    async def _close_both(self) -> None:
        ending = self.ending or Ending("llamaswap")
        with contextlib.suppress(Exception):
            if ending.side == "client" and ending.code is not None:
                # the client closed: pass its close on, and the upstream's answer back
                await self.upstream.close(code=sendable(ending.code), message=_b(ending.reason))
                answer = self.upstream.close_code
                await self.client.close(code=sendable(answer or ending.code))
            elif ending.side == "upstream" and ending.code is not None:
                await self.client.close(code=sendable(ending.code), message=_b(ending.reason))
                await self.upstream.close(code=sendable(ending.code))
            else:
                code = WSCloseCode.GOING_AWAY if ending.code is None else ending.code
                reason = _b(ending.reason)
                if ending.side != "upstream":
                    await self.upstream.close(code=sendable(code), message=reason)
                if ending.side != "client":
                    await self.client.close(code=sendable(code), message=reason)
        # whatever happened above, nothing stays open
        with contextlib.suppress(Exception):
            await self.upstream.close()
        with contextlib.suppress(Exception):
            await self.client.close()
        self._closed = True


def _b(reason: str) -> bytes:
    """A close reason as bytes, within the 123 bytes a close frame allows."""
    return reason.encode("utf-8", "replace")[:123]


async def connect(
    request: web.Request,
    session: aiohttp.ClientSession,
    url: str,
    *,
    headers: CIMultiDict[str] | None = None,
    max_size: int,
    connect_timeout: float | None = None,
) -> Bridge | web.Response:
    """Open the upstream socket, then accept the client's (rule 2). Returns the bridge,
    or the error response to send instead of a 101."""
    problem = handshake_problem(request)
    if problem is not None:
        return error_response(request, 400, problem)
    send_headers = headers if headers is not None else upstream_request_headers(request)
    for name in list(send_headers):
        if name.lower() in HANDSHAKE_HEADERS:
            send_headers.popall(name)
    offered = offered_protocols(request)
    try:
        with anyio.fail_after(connect_timeout) if connect_timeout else contextlib.nullcontext():
            upstream = await session.ws_connect(
                URL(url, encoded=True),
                headers=send_headers,
                protocols=offered,
                autoclose=False,
                autoping=False,
                max_msg_size=max_size,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=CLOSE_SECONDS),
            )
    except aiohttp.WSServerHandshakeError as exc:
        status = exc.status if exc.status >= 400 else 502
        message = f"the upstream refused the websocket upgrade ({exc.status} {exc.message})"
        return error_response(request, status, message)
    except TimeoutError:
        return error_response(request, 504, "the upstream did not answer the websocket upgrade")
    except (aiohttp.ClientError, OSError) as exc:
        return error_response(request, 502, f"upstream unreachable: {exc}")
    client = web.WebSocketResponse(
        protocols=(upstream.protocol,) if upstream.protocol else (),
        autoclose=False,
        autoping=False,
        max_msg_size=max_size,
        timeout=CLOSE_SECONDS,
    )
    try:
        await client.prepare(request)
    except BaseException:
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_SECONDS):
            await upstream.close(code=WSCloseCode.GOING_AWAY)
        raise
    return Bridge(request, client, upstream)
