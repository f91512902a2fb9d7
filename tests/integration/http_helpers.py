"""Shared helpers for the HTTP-layer integration tests (`test_http_*.py`).

Everything talks real HTTP on 127.0.0.1: llamaswap from `running_server`, the fake upstream
it starts, and (where a test must see exactly what reached an upstream: headers, raw path)
a small in-process recording server used as a model's `proxy` or as a peer.
"""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import anyio
from aiohttp import web
from multidict import CIMultiDict

from llamaswap.runtime.events import ProcessStateChanged, RouterSnapshot, SwapStarted
from llamaswap.testing import upstream_command

from .server import RunningServer

CHAT = "/v1/chat/completions"


def chat(model: str, text: str = "hi", **extra: Any) -> dict[str, Any]:
    """A minimal chat completion body."""
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def loud_model(name: str, *options: str, extra: str = "") -> str:
    """Like `fake_model` but without `--silent`: the fake logs one line per request
    (`POST /path 200 (cancelled)` ...) into the model's log, so a test can see what the
    upstream experienced."""
    cmd = " ".join(upstream_command("${PORT}", "--model", name, *options))
    lines = [f"  {name}:", f"    cmd: {cmd}", "    proxy: http://127.0.0.1:${PORT}"]
    if extra:
        lines.append(textwrap.indent(textwrap.dedent(extra).strip(), "    "))
    return "\n".join(lines)


def idle_model(name: str, extra: str = "") -> str:
    """A model that loads and unloads in milliseconds (`sleep`, no health check) for tests
    of listing and load/unload bookkeeping. It answers no requests (its proxy is closed)."""
    lines = [
        f"  {name}:",
        "    cmd: sleep 600",
        "    proxy: http://127.0.0.1:9",
        "    checkEndpoint: none",
    ]
    if extra:
        lines.append(textwrap.indent(textwrap.dedent(extra).strip(), "    "))
    return "\n".join(lines)


def recorded_model(name: str, recorder_url: str, extra: str = "") -> str:
    """A local model whose process is a (live) fake upstream but whose `proxy` is a
    recording server: every request the proxy forwards lands in the recorder."""
    cmd = " ".join(upstream_command("${PORT}", "--silent", "--model", name))
    lines = [f"  {name}:", f"    cmd: {cmd}", f"    proxy: {recorder_url}"]
    if extra:
        lines.append(textwrap.indent(textwrap.dedent(extra).strip(), "    "))
    return "\n".join(lines)


def assert_error(body: Any, *, type_: str | None = None, code: str | None = None) -> str:
    """`body` is the `{"error": {"message", "type", "code"}}` envelope; returns the message."""
    assert isinstance(body, dict), body
    error = body.get("error")
    assert isinstance(error, dict), body
    for key in ("message", "type", "code"):
        assert key in error, f"error envelope lacks {key!r}: {body}"
    assert isinstance(error["message"], str) and error["message"], body
    if type_ is not None:
        assert error["type"] == type_, body
    if code is not None:
        assert error["code"] == code, body
    return str(error["message"])


async def error_of(response: aiohttp.ClientResponse, status: int) -> str:
    """Assert a JSON error response with this status; returns its message."""
    text = await response.text()
    assert response.status == status, (response.status, text)
    assert response.content_type == "application/json", (response.content_type, text)
    return assert_error(json.loads(text))


class Watch:
    """Records every event published on a server's bus; lets a test await a condition."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.events: list[Any] = []
        self._changed = anyio.Event()
        server.service.bus.add_listener(self._on_event)

    def _on_event(self, event: Any) -> None:
        self.events.append(event)
        self._changed.set()
        self._changed = anyio.Event()

    def close(self) -> None:
        self.server.service.bus.remove_listener(self._on_event)

    async def until(self, condition: Callable[[], bool], within: float = 10) -> None:
        """Wait (event driven, bounded by `within` seconds) until `condition()` holds."""
        with anyio.fail_after(within):
            while not condition():
                await self._changed.wait()

    def swaps_to(self, model: str) -> int:
        return sum(1 for e in self.events if isinstance(e, SwapStarted) and e.target == model)

    def states(self, model: str) -> list[str]:
        return [
            e.new for e in self.events if isinstance(e, ProcessStateChanged) and e.model == model
        ]

    def snapshots(self) -> list[RouterSnapshot]:
        return [e for e in self.events if isinstance(e, RouterSnapshot)]

    def idle(self) -> bool:
        snapshot = self.server.service.router.snapshot
        return not snapshot.in_flight and not snapshot.queued

    def state(self, model: str) -> str:
        return self.server.service.router.model_state(model)


@asynccontextmanager
async def watching(server: RunningServer) -> AsyncIterator[Watch]:
    watch = Watch(server)
    try:
        yield watch
    finally:
        watch.close()


async def poll_running(
    http: aiohttp.ClientSession,
    server: RunningServer,
    condition: Callable[[list[dict[str, Any]]], bool],
) -> list[dict[str, Any]]:
    """Poll GET /running (bounded) until `condition(entries)` holds."""
    with anyio.fail_after(10):
        while True:
            async with http.get(server.url + "/running") as response:
                entries = (await response.json())["running"]
            if condition(entries):
                return list(entries)
            await anyio.sleep(0.02)


@dataclass
class SseEvent:
    data: str
    at: float  # time.monotonic() when the event was complete at the client

    def json(self) -> Any:
        return json.loads(self.data)


async def sse_events(response: aiohttp.ClientResponse, limit: int | None = None) -> list[SseEvent]:
    """Read `data:` events as they arrive (timestamped); stops after `limit` events or EOF."""
    events: list[SseEvent] = []
    buffer = b""
    async for chunk in response.content.iter_any():
        now = time.monotonic()
        buffer += chunk
        while b"\n\n" in buffer:
            raw, buffer = buffer.split(b"\n\n", 1)
            for line in raw.decode().splitlines():
                if line.startswith("data:"):
                    events.append(SseEvent(line[5:].strip(), now))
            if limit is not None and len(events) >= limit:
                return events
    return events


def reasoning_text(events: list[SseEvent]) -> str:
    """The concatenated `reasoning_content` of a loading-state stream."""
    text = ""
    for event in events:
        if event.data == "[DONE]":
            continue
        for choice in event.json().get("choices", []):
            text += choice.get("delta", {}).get("reasoning_content", "") or ""
    return text


def content_text(events: list[SseEvent]) -> str:
    text = ""
    for event in events:
        if event.data == "[DONE]":
            continue
        for choice in event.json().get("choices", []):
            text += choice.get("delta", {}).get("content", "") or ""
    return text


@dataclass
class Seen:
    method: str
    raw_path: str
    headers: CIMultiDict[str]
    body: bytes


@dataclass
class Recorder:
    """An upstream that records every request and answers with headers a proxy must
    filter (hop-by-hop ones) next to ones it must keep."""

    url: str = ""
    seen: list[Seen] = field(default_factory=list)

    def requests(self, exclude_health: bool = True) -> list[Seen]:
        return [s for s in self.seen if not (exclude_health and s.raw_path == "/health")]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(Seen(request.method, request.raw_path, CIMultiDict(request.headers), body))
        if request.path == "/health":
            return web.json_response({"status": "ok"})
        if request.path.endswith("/sse"):
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            await response.write(b"data: one\n\n")
            await response.write_eof()
            return response
        return web.json_response(
            {"path": request.raw_path},
            headers={
                "X-Upstream-Kept": "kept",
                "Keep-Alive": "timeout=7",
                "Proxy-Authenticate": "Basic",
                "Connection": "keep-alive, X-Conn-Listed",
                "X-Conn-Listed": "must-go",
                "Trailer": "X-Trail",
            },
        )


@asynccontextmanager
async def recording_upstream() -> AsyncIterator[Recorder]:
    recorder = Recorder()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    recorder.url = f"http://127.0.0.1:{port}"
    try:
        yield recorder
    finally:
        await runner.cleanup()


def multipart_fields(content_type: str, body: bytes) -> dict[str, bytes]:
    """A multipart/form-data body as {field name: raw bytes}, parsed by hand (strictly by
    the boundary), so a test does not trust the parser the product uses."""
    boundary = content_type.split("boundary=", 1)[1].split(";")[0].strip().strip('"').encode()
    fields: dict[str, bytes] = {}
    for part in body.split(b"--" + boundary)[1:]:
        if part.startswith(b"--"):
            break
        head, _, data = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        name = head.split(b'name="', 1)[1].split(b'"', 1)[0].decode()
        fields[name] = data.removesuffix(b"\r\n")
    return fields


async def log_lines_matching(
    server: RunningServer, model: str, needle: str, within: float = 10
) -> list[str]:
    """Wait (bounded, on the log's live feed) until `model`'s log has a line containing
    `needle`; returns the matching lines."""
    ring = server.service.model_log(model)
    assert ring is not None, model
    with ring.follow() as follow, anyio.fail_after(within):
        while True:
            hits = [line for line in ring.lines() if needle in line]
            if hits:
                return hits
            await follow.receive()
