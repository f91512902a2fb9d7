"""The forwarding path against a scripted upstream (raw_upstream.py): what the upstream
is sent, and what the client gets back for every framing, header and failure the
pooled connections and the relay must handle as aiohttp's client did."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiohttp
import anyio
import pytest
from yarl import URL

from .http_helpers import CHAT, chat, sse_events
from .raw_upstream import PAUSE, Answer, RawUpstream, Seen, chunk, raw_upstream
from .server import RunningServer, config_yaml, running_server

pytestmark = pytest.mark.anyio


def model_at(url: str, name: str = "m") -> str:
    return f"  {name}:\n    cmd: sleep 600\n    proxy: {url}\n    checkEndpoint: none"


@asynccontextmanager
async def through(
    answer: Callable[[Seen], Answer] | None = None,
) -> AsyncIterator[tuple[RawUpstream, RunningServer, aiohttp.ClientSession]]:
    """llamaswap in front of a scripted upstream, and a client."""
    async with (
        raw_upstream(answer) as upstream,
        running_server(config_yaml(model_at(upstream.url))) as server,
        server.client() as http,
    ):
        yield upstream, server, http


def head(status: str, *headers: str) -> bytes:
    return ("\r\n".join([f"HTTP/1.1 {status}", *headers]) + "\r\n\r\n").encode()


async def test_requests_reach_the_upstream_as_sent_over_one_kept_connection() -> None:
    async with through() as (upstream, server, http):
        for _ in range(3):
            url = URL(server.url + "/v1/chat/completions?x=%2F%20y&z", encoded=True)
            headers = {"X-Custom": "1", "Keep-Alive": "timeout=5", "Connection": "X-Gone"}
            headers["X-Gone"] = "dropped"
            async with http.post(url, json=chat("m"), headers=headers) as response:
                assert (response.status, await response.read()) == (200, b"ok")
        assert len({seen.connection for seen in upstream.seen}) == 1  # one kept connection
        seen = upstream.seen[0]
        assert seen.request_line == "POST /v1/chat/completions?x=%2F%20y&z HTTP/1.1"
        assert seen.header("Host") == upstream.url.removeprefix("http://")
        assert seen.header("X-Custom") == "1"
        assert seen.header("X-Forwarded-For") == "127.0.0.1"
        for gone in ("Keep-Alive", "Connection", "X-Gone", "Transfer-Encoding"):
            assert seen.header(gone) is None, gone
        assert seen.header("Content-Length") == str(len(seen.body))
        assert json.loads(seen.body) == chat("m")


async def test_response_headers_lose_hop_by_hop_ones_and_keep_the_rest() -> None:
    answer: Answer = (
        [
            head(
                "201 Made It",
                "Content-Type: application/json",
                "Set-Cookie: a=1",
                "Set-Cookie: b=2",
                "Connection: keep-alive, X-Hop",
                "X-Hop: 1",
                "Keep-Alive: timeout=5",
                "Proxy-Authenticate: Basic",
                "X-Kept: yes",
                "Content-Length: 2",
            )
            + b"{}"
        ],
        False,
    )
    async with (
        through(lambda seen: answer) as (_, server, http),
        http.post(server.url + CHAT, json=chat("m")) as r,
    ):
        assert (r.status, r.reason, await r.read()) == (201, "Made It", b"{}")
        assert r.headers.getall("Set-Cookie") == ["a=1", "b=2"]
        assert r.headers["X-Kept"] == "yes"
        assert r.headers["Content-Length"] == "2"
        for gone in ("X-Hop", "Keep-Alive", "Proxy-Authenticate", "Transfer-Encoding"):
            assert gone not in r.headers, gone


async def test_a_chunked_stream_is_relayed_piece_by_piece() -> None:
    """The upstream holds its second piece until the client has the first: any
    buffering in between would never let this finish."""
    first_seen = asyncio.Event()
    answer: Answer = (
        [
            head("200 OK", "Content-Type: text/event-stream", "Transfer-Encoding: chunked"),
            chunk(b"data: one\n\n"),
            first_seen,
            chunk(b"data: two\n\n") + b"0\r\n\r\n",
        ],
        False,
    )
    async with (
        through(lambda seen: answer) as (_, server, http),
        http.post(server.url + CHAT, json=chat("m")) as r,
    ):
        assert r.headers["X-Accel-Buffering"] == "no"
        with anyio.fail_after(5):
            assert await r.content.readuntil(b"\n\n") == b"data: one\n\n"
            first_seen.set()
            assert await r.read() == b"data: two\n\n"


async def test_a_whole_answer_keeps_its_status_and_an_empty_one_stays_empty() -> None:
    answers = {
        "/v1/chat/completions": [head("204 No Content")],
        "/v1/completions": [head("304 Not Modified", "ETag: x")],
        "/v1/embeddings": [head("418 I'm a teapot", "Content-Length: 3"), b"tea"],
    }

    def answer(seen: Seen) -> Answer:
        return answers[seen.request_line.split()[1]], False  # type: ignore[return-value]

    async with through(answer) as (_, server, http):
        for path, status, body in [
            ("/v1/chat/completions", 204, b""),
            ("/v1/completions", 304, b""),
            ("/v1/embeddings", 418, b"tea"),
        ]:
            async with http.post(server.url + path, json=chat("m")) as r:
                assert (r.status, await r.read()) == (status, body)
                if status != 418:
                    assert "Content-Length" not in r.headers
                assert "Date" in r.headers and "Server" in r.headers


async def test_an_http_1_0_client_gets_a_body_delimited_by_close() -> None:
    answer: Answer = (
        [
            head("200 OK", "Transfer-Encoding: chunked"),
            chunk(b"abc"),
            PAUSE,
            chunk(b"def") + b"0\r\n\r\n",
        ],
        False,
    )
    async with through(lambda seen: answer) as (_, server, _http):
        host, port = server.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        body = json.dumps(chat("m")).encode()
        writer.write(
            b"POST /v1/chat/completions HTTP/1.0\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        async with asyncio.timeout(5):
            raw = await reader.read(-1)  # to the close
        writer.close()
        response_head, _, response_body = raw.partition(b"\r\n\r\n")
        assert response_head.startswith(b"HTTP/1.0 200")
        assert b"chunked" not in response_head.lower()
        assert response_body == b"abcdef"


async def test_an_upstream_that_dies_mid_answer_truncates_it_visibly() -> None:
    def answer(seen: Seen) -> Answer:
        if b'"stream": true' in seen.body:
            kind = "Content-Type: text/event-stream"
        else:
            kind = "Content-Type: application/octet-stream"
        return [head("200 OK", kind, "Transfer-Encoding: chunked"), chunk(b"data: x\n\n")], True

    async with through(answer) as (_, server, http):
        async with http.post(server.url + CHAT, json=chat("m")) as r:
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()
        async with http.post(server.url + CHAT, json=chat("m", stream=True)) as r:
            events = await sse_events(r)
        assert events[0].data == "x"
        error = json.loads(events[1].data)["error"]
        assert "upstream connection lost" in error["message"]
        assert events[-1].data == "[DONE]"


async def test_a_slow_client_gets_a_large_stream_whole() -> None:
    """Backpressure: the upstream is paused while the client catches up, nothing lost."""
    piece = bytes(range(256)) * 256  # 64 KiB
    count = 64
    answer: Answer = (
        [head("200 OK", "Transfer-Encoding: chunked"), *[chunk(piece)] * count, b"0\r\n\r\n"],
        False,
    )
    async with (
        through(lambda seen: answer) as (_, server, http),
        http.post(server.url + CHAT, json=chat("m")) as r,
    ):
        received = bytearray()
        started = time.monotonic()
        while data := await r.content.read(256 * 1024):
            received += data
            if time.monotonic() - started < 0.5:
                await asyncio.sleep(0.02)
        assert len(received) == len(piece) * count
        assert bytes(received[: len(piece)]) == piece


async def test_a_client_that_leaves_closes_the_upstream_connection() -> None:
    never = asyncio.Event()
    answer: Answer = (
        [head("200 OK", "Transfer-Encoding: chunked"), chunk(b"data: a\n\n"), never],
        False,
    )
    async with through(lambda seen: answer) as (upstream, server, http):
        r = await http.post(server.url + CHAT, json=chat("m"))
        await r.content.readuntil(b"\n\n")
        r.close()
        await upstream.wait_closed()
        assert not server.service.router.snapshot.in_flight


async def test_expect_continue_from_the_client_still_gets_the_answer() -> None:
    async with (
        through() as (_, server, http),
        http.post(server.url + CHAT, json=chat("m"), expect100=True) as r,
    ):
        assert (r.status, await r.read()) == (200, b"ok")


async def test_a_client_connection_stays_open_across_whole_answers() -> None:
    """A whole answer tells aiohttp to keep the connection (SentResponse.keep_alive)."""
    async with through() as (_, server, _http):
        host, port = server.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        body = json.dumps(chat("m")).encode()
        request = (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        async with asyncio.timeout(5):
            for _ in range(3):
                writer.write(request)
                response_head = await reader.readuntil(b"\r\n\r\n")
                assert response_head.startswith(b"HTTP/1.1 200 OK\r\n")
                assert b"Connection: close" not in response_head
                assert await reader.readexactly(2) == b"ok"
        writer.close()


@pytest.mark.parametrize("stream", [True, False])
async def test_an_unload_cuts_a_forwarded_answer_short(stream: bool) -> None:
    """The router revokes the lease: an event stream ends with an error event and
    [DONE], any other answer is cut; the upstream connection is closed either way."""
    never = asyncio.Event()
    kind = "text/event-stream" if stream else "application/octet-stream"
    answer: Answer = (
        [
            head("200 OK", f"Content-Type: {kind}", "Transfer-Encoding: chunked"),
            chunk(b"data: a\n\n"),
            never,
        ],
        False,
    )
    async with through(lambda seen: answer) as (upstream, server, http):
        async with http.post(server.url + CHAT, json=chat("m", stream=stream)) as r:
            assert await r.content.readuntil(b"\n\n") == b"data: a\n\n"
            await server.service.router.unload(["m"])
            if stream:
                events = await sse_events(r)
                assert "cut short" in json.loads(events[0].data)["error"]["message"]
                assert events[-1].data == "[DONE]"
            else:
                with pytest.raises(aiohttp.ClientPayloadError):
                    await r.read()
        await upstream.wait_closed()
        assert not server.service.router.snapshot.in_flight
