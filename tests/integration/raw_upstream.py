"""A scripted HTTP/1.1 upstream on a raw socket, for the forwarding path's tests.

Every request on every connection is read whole (head and Content-Length body) and
recorded with the connection it came on; `answer(request)` returns what to send back:
a list of pieces written one by one (bytes; `PAUSE` sleeps a little; an
`asyncio.Event` waits until the test sets it) and whether to close the connection
afterwards. What a test cannot get from a real server
(exact framing, a truncated body, an interim 100, a close at a chosen moment) is one
line here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

PAUSE = b""  # in an answer: wait a little before the next piece (flushes the previous)
PAUSE_SECONDS = 0.05


@dataclass
class Seen:
    """One request as the upstream read it."""

    connection: int
    head: bytes
    body: bytes

    @property
    def request_line(self) -> str:
        return self.head.split(b"\r\n", 1)[0].decode()

    @property
    def header_lines(self) -> list[str]:
        return [line.decode() for line in self.head.split(b"\r\n")[1:] if line]

    def header(self, name: str) -> str | None:
        for line in self.header_lines:
            key, _, value = line.partition(":")
            if key.lower() == name.lower():
                return value.strip()
        return None


Answer = tuple[list[bytes | asyncio.Event], bool]


def ok(body: bytes = b"ok", *extra: str) -> Answer:
    head = ["HTTP/1.1 200 OK", f"Content-Length: {len(body)}", *extra]
    return [("\r\n".join(head) + "\r\n\r\n").encode() + body], False


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


@dataclass
class RawUpstream:
    answer: Callable[[Seen], Answer] = field(default=lambda seen: ok())
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    open: int = 0
    url: str = ""
    closed: asyncio.Event = field(default_factory=asyncio.Event)  # set when any closes

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        number = self.connections
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b""
                seen = Seen(number, head, body)
                self.seen.append(seen)
                pieces, close = self.answer(seen)
                for piece in pieces:
                    if isinstance(piece, asyncio.Event):
                        if not await _until_set_or_closed(piece, reader):
                            return  # the peer closed the connection meanwhile
                    elif piece is PAUSE:
                        await asyncio.sleep(PAUSE_SECONDS)
                    else:
                        writer.write(piece)
                        await writer.drain()
                if close:
                    return
        finally:
            self.open -= 1
            with suppress(ConnectionError):
                writer.close()
            self.closed.set()

    async def wait_closed(self, count: int = 0, within: float = 5) -> None:
        """Until at most `count` connections are open."""
        async with asyncio.timeout(within):
            while self.open > count:
                self.closed.clear()
                await self.closed.wait()


async def _until_set_or_closed(event: asyncio.Event, reader: asyncio.StreamReader) -> bool:
    """Wait for `event`; False if the connection closed first (it is watched meanwhile)."""
    waits = asyncio.ensure_future(event.wait())
    closes = asyncio.ensure_future(reader.read(1))
    try:
        done, _ = await asyncio.wait({waits, closes}, timeout=10, return_when="FIRST_COMPLETED")
    finally:
        waits.cancel()
        closes.cancel()
        await asyncio.wait({waits, closes})
    if closes in done and closes.result():
        raise AssertionError("the peer sent a request before this answer was complete")
    return waits in done


@asynccontextmanager
async def raw_upstream(
    answer: Callable[[Seen], Answer] | None = None,
) -> AsyncIterator[RawUpstream]:
    upstream = RawUpstream() if answer is None else RawUpstream(answer)
    server = await asyncio.start_server(upstream._serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    upstream.url = f"http://127.0.0.1:{port}"
    try:
        yield upstream
    finally:
        server.close()
        with suppress(Exception):
            async with asyncio.timeout(2):
                await server.wait_closed()
