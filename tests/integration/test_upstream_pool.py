"""The upstream connection pool and its HTTP/1.1 reader (llamaswap.http.upstream, and
relay.open_exchange), against a scripted upstream on 127.0.0.1: the request head as
aiohttp's client wrote it, keep-alive reuse, every response framing, interim answers,
stale connections, truncation, timeouts and the connection limit."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import Callable

import aiohttp
import pytest
from multidict import CIMultiDict
from yarl import URL

from llamaswap.config import Timeouts
from llamaswap.http.pool import UpstreamPool
from llamaswap.http.relay import Broken, open_exchange
from llamaswap.http.upstream import (
    HeadTimeout,
    Origin,
    UpstreamConnection,
    encode_request,
    split_base,
    split_url,
)

from .raw_upstream import PAUSE, Answer, RawUpstream, Seen, ok, raw_upstream

pytestmark = pytest.mark.anyio

ORIGIN = Origin("127.0.0.1", 8080, "127.0.0.1:8080")


def test_urls_split_as_aiohttp_reads_them() -> None:
    assert split_url("http://127.0.0.1:8080/v1/x%2Fy?q=%20a") == (ORIGIN, "/v1/x%2Fy?q=%20a")
    assert split_url("http://LocalHost:80?a=1") == (Origin("localhost", 80, "localhost"), "/?a=1")
    assert split_url("http://[::1]:9000") == (Origin("::1", 9000, "[::1]:9000"), "/")
    for other in ("https://h/x", "http://user:pw@h/x", "ws://h/", "http:///x"):
        assert split_url(other) is None
    assert split_base("http://127.0.0.1:8080/") == (ORIGIN, "")
    assert split_base("http://127.0.0.1:8080/api/") == (ORIGIN, "/api")
    assert split_base("http://127.0.0.1:8080/api?x=1") is None


async def test_the_request_head_is_what_aiohttp_sent() -> None:
    """Byte for byte what aiohttp's client (as llamaswap configured it) wrote before."""
    got: list[bytes] = []

    async def capture(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            (
                int(v)
                for k, _, v in (x.partition(b":") for x in head.split(b"\r\n"))
                if k.lower() == b"content-length"
            ),
            0,
        )
        got.append(head + (await reader.readexactly(length) if length else b""))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(capture, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cases = [
        (
            "POST",
            b'{"a":1}',
            [("Content-Type", "application/json"), ("X-Foo", "a"), ("X-Foo", "b")],
        ),
        ("GET", b"", [("Accept", "text/html")]),
        ("POST", b"", []),
        ("POST", b"abc", []),
        ("GET", b"", [("Host", "example.com:99")]),
        ("DELETE", b"", []),
        ("PUT", b"x", [("accept", "a/b"), ("content-type", "c/d")]),
    ]
    session = aiohttp.ClientSession(
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
    )
    origin = Origin("127.0.0.1", port, f"127.0.0.1:{port}")
    try:
        async with session:
            for method, body, headers in cases:
                url = URL(f"http://127.0.0.1:{port}/v1/x%2Fy?q=%20a", encoded=True)
                async with session.request(
                    method, url, headers=CIMultiDict(headers), data=body or None
                ) as response:
                    await response.read()
                theirs = got.pop()
                ours = encode_request(
                    method, "/v1/x%2Fy?q=%20a", origin, CIMultiDict(headers), body
                )
                assert ours + body == theirs, (method, headers)
    finally:
        server.close()


def test_a_header_that_would_split_the_request_is_refused() -> None:
    for name, value in [("X-A", "a\r\nX-B: b"), ("X-A", "a\nb"), ("X-A", "a\x00")]:
        with pytest.raises(ValueError, match="forbidden control character"):
            encode_request("GET", "/", ORIGIN, CIMultiDict([(name, value)]), b"")


async def exchange(
    pool: UpstreamPool,
    upstream: RawUpstream,
    method: str = "POST",
    body: bytes = b"{}",
    timeouts: Timeouts | None = None,
) -> tuple[UpstreamConnection, bytes]:
    """One exchange, the whole body read; the connection is released."""
    split = split_url(upstream.url + "/v1/chat")
    assert split is not None
    origin, target = split
    conn = await open_exchange(pool, method, origin, target, CIMultiDict(), body, timeouts)
    parts: list[bytes] = []
    try:
        conn.attach(parts.append)
        while not conn.complete and conn.error is None:
            await conn.wait()
        if conn.error is not None:
            raise conn.error
    finally:
        pool.release(conn)
    return conn, b"".join(parts)


def framed(*pieces: bytes, close: bool = False) -> Answer:
    return list(pieces), close


async def test_keep_alive_connections_are_reused() -> None:
    pool = UpstreamPool()
    async with raw_upstream() as upstream:
        for _ in range(3):
            conn, body = await exchange(pool, upstream)
            assert (conn.status, body) == (200, b"ok")
        assert upstream.connections == 1
        assert [seen.connection for seen in upstream.seen] == [1, 1, 1]
        assert pool.busy == 0
        pool.close()
        await upstream.wait_closed()


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param(
            framed(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"3\r\nabc\r\n",
                PAUSE,
                b"2;ext=1\r\nde\r\n0\r\nTrailer: x\r\n\r\n",
            ),
            b"abcde",
            id="chunked-with-extension-and-trailer",
        ),
        pytest.param(
            framed(
                b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil", PAUSE, b" the end", close=True
            ),
            b"until the end",
            id="until-close",
        ),
        pytest.param(
            framed(b"HTTP/1.0 200 OK\r\n\r\nold", close=True), b"old", id="http-1.0-until-close"
        ),
        pytest.param(
            framed(
                b"HTTP/1.1 100 Continue\r\n\r\n",
                PAUSE,
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
            ),
            b"hi",
            id="interim-100-skipped",
        ),
        pytest.param(framed(b"HTTP/1.1 204 No Content\r\n\r\n"), b"", id="no-content"),
        pytest.param(
            framed(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab", PAUSE, b"cd"),
            b"abcd",
            id="length-in-two-pieces",
        ),
    ],
)
async def test_every_framing_is_read(answer: Answer, expected: bytes) -> None:
    pool = UpstreamPool()
    async with raw_upstream(lambda seen: answer) as upstream:
        conn, body = await exchange(pool, upstream)
        assert body == expected
        keeps = not answer[1]
        assert conn.keep_alive is keeps
        assert pool.idle(conn.origin) == (1 if keeps else 0)
        pool.close()


async def test_an_interim_answer_leaves_the_final_head() -> None:
    answer = framed(
        b"HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n",
        b"HTTP/1.1 201 Created\r\nX-Final: 1\r\nContent-Length: 0\r\n\r\n",
    )
    pool = UpstreamPool()
    async with raw_upstream(lambda seen: answer) as upstream:
        conn, _ = await exchange(pool, upstream)
        assert conn.status == 201
        assert conn.reason == b"Created"
        assert conn.raw_headers == [(b"X-Final", b"1"), (b"Content-Length", b"0")]
        pool.close()


async def test_an_idle_connection_the_upstream_closed_is_not_used() -> None:
    pool = UpstreamPool()
    async with raw_upstream(lambda seen: ([*ok()[0], PAUSE], True)) as upstream:
        for _ in range(2):
            _, body = await exchange(pool, upstream)
            assert body == b"ok"
            await upstream.wait_closed()  # its keep-alive timeout, say
            await asyncio.sleep(0.05)  # the pool reads the close
        assert upstream.connections == 2
        pool.close()


async def test_connection_close_is_honoured() -> None:
    pool = UpstreamPool()
    async with raw_upstream(lambda seen: ok(b"ok", "Connection: close")) as upstream:
        for _ in range(2):
            conn, body = await exchange(pool, upstream)
            assert body == b"ok" and not conn.keep_alive
        assert upstream.connections == 2
        pool.close()


def stale_then_ok() -> Callable[[Seen], Answer]:
    """The first connection closes at its second request without a word (a keep-alive
    timeout racing the request); every other request is answered."""
    counts: Counter[int] = Counter()

    def answer(seen: Seen) -> Answer:
        counts[seen.connection] += 1
        if seen.connection == 1 and counts[1] == 2:
            return [], True
        return ok()

    return answer


@pytest.mark.parametrize(("method", "retried"), [("GET", True), ("POST", False)])
async def test_a_stale_kept_alive_connection(method: str, retried: bool) -> None:
    """aiohttp's rule: an idempotent request is sent once more on a fresh connection;
    any other is a 502 (it may have reached the upstream)."""
    pool = UpstreamPool()
    async with raw_upstream(stale_then_ok()) as upstream:
        await exchange(pool, upstream, method)
        if retried:
            _, body = await exchange(pool, upstream, method)
            assert body == b"ok"
            assert upstream.connections == 2
        else:
            with pytest.raises(Broken, match="upstream unreachable: the upstream closed") as error:
                await exchange(pool, upstream, method)
            assert error.value.status == 502
        pool.close()


async def test_a_body_cut_short_is_an_error_not_an_end() -> None:
    answer = framed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", close=True)
    pool = UpstreamPool()
    async with raw_upstream(lambda seen: answer) as upstream:
        with pytest.raises(Exception, match="the upstream closed the connection"):
            await exchange(pool, upstream)
        assert pool.busy == 0 and pool.idle(split_url(upstream.url)[0]) == 0  # type: ignore[index]
        pool.close()


async def test_a_malformed_answer_is_an_error() -> None:
    answer = framed(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\nabc")
    pool = UpstreamPool()
    async with raw_upstream(lambda seen: answer) as upstream:
        with pytest.raises(Broken, match="malformed response") as error:
            await exchange(pool, upstream)
        assert error.value.status == 502
        pool.close()


async def test_no_head_within_the_response_header_timeout_is_a_504() -> None:
    answer = framed(PAUSE, PAUSE, PAUSE, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    pool = UpstreamPool()
    async with raw_upstream(lambda seen: answer) as upstream:
        timeouts = Timeouts(response_header=0.05)
        with pytest.raises(Broken, match=r"no response headers within 0\.05s") as error:
            await exchange(pool, upstream, timeouts=timeouts)
        assert error.value.status == 504
        await upstream.wait_closed()  # the connection was not kept
        pool.close()
    assert HeadTimeout  # the connection's own error type


async def test_an_unreachable_upstream_is_a_502() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pool = UpstreamPool()
    origin = Origin("127.0.0.1", port, f"127.0.0.1:{port}")
    with pytest.raises(Broken, match="upstream unreachable: cannot connect") as error:
        await open_exchange(pool, "GET", origin, "/", CIMultiDict(), b"", None)
    assert error.value.status == 502
    assert pool.busy == 0


async def test_the_limit_holds_callers_until_a_connection_is_released() -> None:
    pool = UpstreamPool(limit=2)
    async with raw_upstream() as upstream:
        split = split_url(upstream.url)
        assert split is not None
        origin = split[0]
        first = await pool.acquire(origin, None)
        second = await pool.acquire(origin, None)
        third = asyncio.ensure_future(pool.acquire(origin, None))
        await asyncio.sleep(0.05)
        assert not third.done() and pool.busy == 2
        cancelled = asyncio.ensure_future(pool.acquire(origin, None))
        await asyncio.sleep(0)
        cancelled.cancel()
        pool.release(first)  # never used: closed, and its turn goes to the next caller
        conn = await asyncio.wait_for(third, 2)
        assert pool.busy == 2
        for held in (second, conn):
            pool.release(held)
        assert pool.busy == 0
        pool.close()


async def test_idle_connections_are_closed_after_the_keepalive() -> None:
    pool = UpstreamPool(keepalive=0.1)
    async with raw_upstream() as upstream:
        conn, _ = await exchange(pool, upstream)
        assert pool.idle(conn.origin) == 1
        await upstream.wait_closed(within=2)
        assert pool.idle(conn.origin) == 0
        pool.close()


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        pytest.param(
            framed(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n"
            ),
            "malformed response",
            id="an-upgrade-nobody-asked-for",
        ),
        pytest.param(
            framed(b"HTTP/1.1 200 OK\r\n" + b"X-Big: " + b"a" * 70_000 + b"\r\n\r\n"),
            "response head larger than 65536 bytes",
            id="a-head-past-the-limit",
        ),
    ],
)
async def test_answers_that_cannot_be_relayed_are_a_502(answer: Answer, message: str) -> None:
    pool = UpstreamPool()
    async with raw_upstream(lambda seen: answer) as upstream:
        with pytest.raises(Broken, match=message) as error:
            await exchange(pool, upstream)
        assert error.value.status == 502 and pool.busy == 0
        pool.close()
