"""An in-process upstream that speaks websockets, for the websocket and ComfyUI tests.

Every path answers: `.../health` is the health check (503 while `healthy` is unset),
a websocket upgrade gets an echo socket, any other request `{"path": <raw path>}`
(a path ending in `/hold` only once `release` is set). With `check_origin` it refuses,
as ComfyUI does, a request whose `Origin` is not its `Host`.
Several models can share it through a path prefix in their `proxy`
(`http://127.0.0.1:P/a`), so a test sees which model a request reached.

The echo socket (subprotocol `v2` when offered) sends text and binary back, answers pings
itself (as a real server would), and understands two text commands: `ping:<payload>`
makes it ping the client, `close:<code>:<reason>` makes it close. Every handshake and
every close frame it receives is recorded.
"""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import anyio
from aiohttp import WSMsgType, web
from multidict import CIMultiDict


@dataclass
class Handshake:
    raw_path: str
    headers: CIMultiDict[str]


@dataclass
class WsUpstream:
    url: str = ""
    handshakes: list[Handshake] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # raw paths of plain requests
    closes: list[tuple[int, str]] = field(default_factory=list)  # close frames received
    healthy: anyio.Event = field(default_factory=anyio.Event)
    release: anyio.Event = field(default_factory=anyio.Event)  # lets `/hold` requests answer
    holding: int = 0
    changed: anyio.Event = field(default_factory=anyio.Event)
    open_sockets: int = 0
    check_origin: bool = False  # refuse as ComfyUI does when Origin is not the Host

    def _changed(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    async def until(self, condition: object, within: float = 10) -> None:
        """Wait (bounded) until `condition()` holds; it is re-checked on every change."""
        assert callable(condition)
        with anyio.fail_after(within):
            while not condition():
                await self.changed.wait()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if self.check_origin and origin and urlsplit(origin).netloc != request.host:
            return web.Response(status=403, text="non matching host and origin")
        if request.path.endswith("/health"):
            if not self.healthy.is_set():
                return web.json_response({"error": "Loading model"}, status=503)
            return web.json_response({"status": "ok"})
        socket = web.WebSocketResponse(protocols=("v2",), autoclose=False)
        if not socket.can_prepare(request):
            self.requests.append(request.raw_path)
            self._changed()
            if request.path.endswith("/hold"):
                self.holding += 1
                self._changed()
                await self.release.wait()
                self.holding -= 1
            return web.json_response({"path": request.raw_path})
        self.handshakes.append(Handshake(request.raw_path, CIMultiDict(request.headers)))
        await socket.prepare(request)
        self.open_sockets += 1
        self._changed()
        try:
            await self._echo(socket)
        finally:
            self.open_sockets -= 1
            self._changed()
        return socket

    async def _echo(self, socket: web.WebSocketResponse) -> None:
        while True:
            message = await socket.receive()
            if message.type is WSMsgType.CLOSE:
                self.closes.append((int(message.data), str(message.extra or "")))
                self._changed()
                await socket.close(code=int(message.data))  # the answer echoes the code
                return
            if message.type is WSMsgType.BINARY:
                await socket.send_bytes(message.data)
            elif message.type is not WSMsgType.TEXT:
                return  # the connection is gone
            elif message.data.startswith("ping:"):
                await socket.ping(message.data.removeprefix("ping:").encode())
            elif message.data.startswith("close:"):
                _, code, reason = message.data.split(":", 2)
                await socket.close(code=int(code), message=reason.encode())
                return
            else:
                await socket.send_str(message.data)

    def model(self, name: str, extra: str = "") -> str:
        """YAML for a model served here under `/<name>` (its process just sleeps)."""
        lines = [f"  {name}:", "    cmd: sleep 600", f"    proxy: {self.url}/{name}"]
        if extra:
            lines.append(textwrap.indent(textwrap.dedent(extra).strip(), "    "))
        return "\n".join(lines)


@asynccontextmanager
async def ws_upstream(*, healthy: bool = True) -> AsyncIterator[WsUpstream]:
    upstream = WsUpstream()
    if healthy:
        upstream.healthy.set()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", upstream.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    upstream.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield upstream
    finally:
        await runner.cleanup()
