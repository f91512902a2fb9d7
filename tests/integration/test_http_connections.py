"""Connection limits (issue 13, W3/W4): a request head must arrive within
requestHeaderTimeout, connections beyond maxConnections are refused at once while open
ones keep working, and each malformed request costs one short, rate-limited log line.

Raw sockets: the point is what a client that never finishes its request does.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest

from llamaswap import logsetup
from llamaswap.config import parse_config
from llamaswap.server import apply_config

from .server import RunningServer, config_yaml, fake_model, running_server

pytestmark = pytest.mark.anyio


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {"use_uvloop": False}), id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),  # what `run` uses
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, bool]]:
    """Both event loops: their transports differ (uvloop's are no asyncio.Transport)."""
    backend: tuple[str, dict[str, bool]] = request.param
    return backend


HALF_LINE = b"GET /health HT"  # half a request line, never finished
HEALTH = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"  # keep-alive
HEALTH_ONCE = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


@asynccontextmanager
async def connection(server: RunningServer) -> AsyncIterator[anyio.abc.SocketStream]:
    host, port = server.url.removeprefix("http://").split(":")
    async with await anyio.connect_tcp(host, int(port)) as stream:
        yield stream


async def until_closed(stream: anyio.abc.SocketStream, within: float) -> bytes:
    """Everything the server sends until it closes the connection (fails after `within`)."""
    received = b""
    with anyio.fail_after(within):
        while True:
            try:
                received += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError):
                return received


async def response(stream: anyio.abc.SocketStream, within: float = 5) -> tuple[int, bytes]:
    """One response on a keep-alive connection: (status, body) by Content-Length."""
    data = b""
    with anyio.fail_after(within):
        while b"\r\n\r\n" not in data:
            data += await stream.receive()
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next(
            int(line.split(":", 1)[1])
            for line in lines
            if line.lower().startswith("content-length:")
        )
        while len(body) < length:
            body += await stream.receive()
    return int(lines[0].split()[1]), body


def error_message(raw: bytes) -> str:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"application/json" in head, raw
    message = json.loads(body)["error"]["message"]
    assert isinstance(message, str)
    return message


async def test_connections_that_never_finish_a_request_head_are_closed() -> None:
    """A slowloris: 150 connections that send half a request line and 50 that send
    nothing. All are closed once requestHeaderTimeout has passed (the ones that sent
    something get a 408), not earlier; a keep-alive client idle for longer than that
    keeps its connection (idle keep-alive is not a slow head)."""
    yaml = config_yaml(fake_model("a"), top="requestHeaderTimeout: 0.5")
    async with running_server(yaml) as server, connection(server) as keep_alive:
        await keep_alive.send(HEALTH)
        assert await response(keep_alive) == (200, b"OK")
        results: list[tuple[bool, float, bytes]] = []

        async def slow(sends: bool) -> None:
            # timed from before the connect: the server's clock cannot start earlier,
            # while this task may resume late after the connect under load
            started = time.monotonic()
            async with connection(server) as stream:
                if sends:
                    await stream.send(HALF_LINE)
                received = await until_closed(stream, within=10)
                results.append((sends, time.monotonic() - started, received))

        async with anyio.create_task_group() as tg:
            for i in range(200):
                tg.start_soon(slow, i % 4 != 0)
        assert len(results) == 200
        assert min(seconds for _, seconds, _ in results) >= 0.45
        for sent, _, received in results:
            if sent:
                assert received.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), received
                assert "requestHeaderTimeout" in error_message(received)
            else:
                assert received == b""  # an unused connection is closed without a word
        # the keep-alive connection, idle all that time, still serves
        await keep_alive.send(HEALTH)
        assert await response(keep_alive) == (200, b"OK")


async def test_a_slow_head_after_a_keep_alive_response_is_timed_too() -> None:
    yaml = config_yaml(fake_model("a"), top="requestHeaderTimeout: 0.3")
    async with running_server(yaml) as server, connection(server) as stream:
        await stream.send(HEALTH)
        assert await response(stream) == (200, b"OK")
        await stream.send(HALF_LINE)
        received = await until_closed(stream, within=5)
        assert received.startswith(b"HTTP/1.1 408"), received


async def test_connections_beyond_the_cap_are_refused_while_open_ones_keep_working() -> None:
    yaml = config_yaml(fake_model("a"), top="maxConnections: 20\nrequestHeaderTimeout: 60")
    async with running_server(yaml) as server, connection(server) as first:
        await first.send(HEALTH)
        assert await response(first) == (200, b"OK")
        async with anyio.create_task_group() as tg:
            holders: list[anyio.abc.SocketStream] = []
            for _ in range(19):  # 19 slow heads + the keep-alive one: the cap is reached
                stream = await anyio.connect_tcp(*_address(server))
                await stream.send(HALF_LINE)
                holders.append(stream)
            async with connection(server) as over:
                await over.send(HEALTH_ONCE)
                started = time.monotonic()
                refused = await until_closed(over, within=5)
            assert time.monotonic() - started < 1.0
            assert refused.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), refused
            assert b"Retry-After: 1" in refused
            assert "maxConnections" in error_message(refused)
            # the open connection is unaffected
            await first.send(HEALTH)
            assert await response(first) == (200, b"OK")
            # closing some makes room again (the server learns of a close asynchronously:
            # a bounded retry, not a sleep)
            for stream in holders[:5]:
                await stream.aclose()
            with anyio.fail_after(5):
                while True:
                    async with connection(server) as again:
                        await again.send(HEALTH_ONCE)
                        reply = await until_closed(again, within=5)
                    if not reply.startswith(b"HTTP/1.1 503"):
                        break
            assert reply.startswith(b"HTTP/1.1 200"), reply
            for stream in holders[5:]:
                await stream.aclose()
            tg.cancel_scope.cancel()


def _address(server: RunningServer) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


MALFORMED = [
    b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # request line too long
    b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(300)) + b"\r\n",
    b"BR\x01EW / HTTP/1.1\r\nHost: x\r\n\r\n",  # bad method
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Bad : v\r\n\r\n",  # invalid header
]


async def test_malformed_requests_cost_one_short_rate_limited_line_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """aiohttp would log each with an 11-line traceback; now each is one line in the
    proxy log (what /logs serves), at most CLIENT_LINES_BURST per minute, then one line
    that says how many were left out. Nothing reaches Python's root logger."""
    caplog.set_level(logging.DEBUG)
    count = 60
    async with running_server(config_yaml(fake_model("a"))) as server:
        for i in range(count):
            async with connection(server) as stream:
                await stream.send(MALFORMED[i % len(MALFORMED)])
                answer = await until_closed(stream, within=5)
            assert answer.startswith(b"HTTP/1.1 400") or answer.startswith(b"HTTP/1.0 400"), answer
            assert error_message(answer).startswith("bad request: ")
        lines = [line for line in server.service.proxy_log.lines() if "bad request" in line]
        assert len(lines) == logsetup.CLIENT_LINES_BURST, lines
        assert "[INFO] bad request from 127.0.0.1: line too long (limit 8190 bytes)" in lines
        assert "[INFO] bad request from 127.0.0.1: Too many headers received" in lines
        assert not [line for line in server.service.proxy_log.lines() if "Traceback" in line]
        aiohttp_records = [r for r in caplog.records if r.name.startswith("aiohttp")]
        assert not aiohttp_records, [r.getMessage() for r in aiohttp_records]
        # the window's end reports what was left out
        limit = next(
            f
            for f in logging.getLogger(logsetup.CLIENT_LOG).filters
            if isinstance(f, logsetup.RateLimited)
        )
        limit.flush()
        summary = f"{count - logsetup.CLIENT_LINES_BURST} more lines about misbehaving clients"
        assert summary in server.service.proxy_log.lines()[-1]


async def test_a_reload_applies_to_new_connections() -> None:
    yaml = config_yaml(fake_model("a"), top="requestHeaderTimeout: 60\nmaxConnections: 0")
    async with running_server(yaml) as server:
        reloaded = config_yaml(fake_model("a"), top="requestHeaderTimeout: 0.3\nmaxConnections: 1")
        await apply_config(server.service, parse_config(reloaded))
        async with connection(server) as stream:
            await stream.send(HALF_LINE)
            async with connection(server) as over:
                assert (await until_closed(over, within=5)).startswith(b"HTTP/1.1 503")
            assert (await until_closed(stream, within=5)).startswith(b"HTTP/1.1 408")
