"""Log endpoints: the history and live streams of llamaswap's and the upstreams' output (§2.7).

`/logs/stream` is plain chunked text, as in llama-swap (not SSE), so `curl -N` shows
it as is. A follower never slows anything down: the log rings drop lines for a
subscriber that falls behind, and this module only ever waits on its own client.
Streams end when the client leaves or when the server shuts down (aiohttp would
otherwise wait for them for its whole shutdown timeout).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import anyio
from aiohttp import web
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from llamaswap.runtime.events import LogLine, Subscription
from llamaswap.runtime.logs import LogRing

from ..errors import error_response
from ..service import Service, service_of

HISTORY_BYTES = 100 * 1024
FOLLOW_BUFFER = 1024  # lines a follower may lag behind a ring before it loses some
BATCH_LINES = 256  # lines written to the client in one chunk when it has fallen behind
INVALID_LOGGER = "invalid logger. Use 'proxy', 'upstream' or a model's ID"
STREAM_HEADERS = {
    "Content-Type": "text/plain",
    "X-Content-Type-Options": "nosniff",
    "X-Accel-Buffering": "no",
}


class OpenStreams:
    """The cancel scopes of the streams being served, to end them all at shutdown."""

    def __init__(self) -> None:
        self._scopes: set[anyio.CancelScope] = set()

    @contextlib.contextmanager
    def open(self) -> Iterator[None]:
        """Run the body until it ends by itself or the server shuts down."""
        with anyio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                yield
            finally:
                self._scopes.discard(scope)

    async def close_all(self, _app: web.Application) -> None:
        for scope in list(self._scopes):
            scope.cancel()


OPEN_STREAMS = web.AppKey("llamaswap_log_streams", OpenStreams)


def add_routes(app: web.Application) -> None:
    streams = OpenStreams()
    app[OPEN_STREAMS] = streams
    app.on_shutdown.append(streams.close_all)
    app.router.add_get("/logs", logs)
    # No HEAD: a stream never ends by itself, and a HEAD answer would have no body to end.
    app.router.add_get("/logs/stream", logs_stream, allow_head=False)
    app.router.add_get("/logs/stream/{logger:.*}", logs_stream, allow_head=False)


def rings_for(service: Service, logger: str) -> tuple[LogRing, ...] | None:
    """The rings a logger name stands for (combined = proxy and upstream); None if unknown."""
    if not logger:
        return (service.combined_log,)
    if logger == "proxy":
        return (service.proxy_log,)
    if logger == "upstream":
        return (service.upstream_log,)
    model_id = service.config.resolve(logger)
    ring = service.model_log(model_id) if model_id is not None else None
    return (ring,) if ring is not None else None


def history(rings: tuple[LogRing, ...], limit: int = HISTORY_BYTES) -> bytes:
    """The rings' retained lines, one ring after the other, cut to the last `limit`
    bytes at a line boundary."""
    text = "".join(ring.history() for ring in rings).encode()
    if len(text) <= limit:
        return text
    cut = text[-limit:]
    newline = cut.find(b"\n")
    return cut[newline + 1 :] if newline >= 0 else b""


async def logs(request: web.Request) -> web.Response:
    """The combined history as text, or the UI for a browser."""
    if "text/html" in request.headers.get("Accept", ""):
        raise web.HTTPFound("/ui/")
    service = service_of(request)
    body = history((service.combined_log,))
    return web.Response(body=body, content_type="text/plain", charset="utf-8")


async def logs_stream(request: web.Request) -> web.StreamResponse:
    """History (unless `no-history`), then live lines until the client or server leaves."""
    service = service_of(request)
    rings = rings_for(service, request.match_info.get("logger", ""))
    if rings is None:
        return error_response(request, 400, INVALID_LOGGER)
    response = web.StreamResponse(headers=STREAM_HEADERS)
    response.enable_chunked_encoding()
    with contextlib.ExitStack() as stack:
        # Follow before reading the history, with no await in between: no line is
        # lost or sent twice between the two.
        followers = [stack.enter_context(ring.follow(FOLLOW_BUFFER)) for ring in rings]
        past = b"" if "no-history" in request.query else history(rings)
        try:
            with request.app[OPEN_STREAMS].open():
                await response.prepare(request)
                if past:
                    await response.write(past)
                await _relay(response, followers)
        except ConnectionError:
            pass  # the client left; nothing more to send
    return response


async def _relay(response: web.StreamResponse, followers: list[Subscription]) -> None:
    """Write the followers' lines to the client as they arrive, merged in arrival order.

    One pump per follower feeds a small unbuffered stream; when the client is slow the
    pumps wait, their subscriptions fill up and drop lines, and no writer is held up.
    """
    send, receive = anyio.create_memory_object_stream[LogLine]()
    # The pumps are cancelled before `receive` closes, so none fails on a closed stream.
    with receive:
        async with anyio.create_task_group() as tg:
            for follower in followers:
                tg.start_soon(_pump, follower, send.clone())
            send.close()
            try:
                with contextlib.suppress(ConnectionError):  # the client left
                    await _write_lines(response, receive)
            finally:
                tg.cancel_scope.cancel()


async def _pump(follower: Subscription, send: MemoryObjectSendStream[LogLine]) -> None:
    async with send:
        async for line in follower:
            await send.send(line)


async def _write_lines(
    response: web.StreamResponse, receive: MemoryObjectReceiveStream[LogLine]
) -> None:
    async for line in receive:
        batch = [line.text]
        while len(batch) < BATCH_LINES:
            try:
                batch.append(receive.receive_nowait().text)
            except (anyio.WouldBlock, anyio.EndOfStream):
                break
        await response.write("".join(text + "\n" for text in batch).encode())
