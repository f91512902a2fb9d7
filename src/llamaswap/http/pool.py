"""The pool of keep-alive connections to upstreams (`upstream.UpstreamConnection`).

Idle connections are kept per origin, most recently used first, and closed after
`keepalive` seconds idle by one sweeping timer (not one timer per connection). At most
`limit` connections are held at once, as aiohttp's connector allowed; more callers wait
for a turn, first come first served.
"""

from __future__ import annotations

import asyncio
from collections import deque

import anyio

from .upstream import Origin, UpstreamConnection, UpstreamError

KEEPALIVE_SECONDS = 60.0  # idle connections kept this long (aiohttp's pool used 60 s too)
POOL_LIMIT = 256  # connections held at once (as the aiohttp connector had)


class UpstreamPool:
    """Connections per origin; idle ones do not count towards `limit`."""

    def __init__(self, *, limit: int = POOL_LIMIT, keepalive: float = KEEPALIVE_SECONDS) -> None:
        self._idle: dict[Origin, list[UpstreamConnection]] = {}
        self._limit = limit
        self._keepalive = keepalive
        self._busy = 0
        self._turns: deque[asyncio.Future[None]] = deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop of the first use

    @property
    def busy(self) -> int:
        return self._busy

    def idle(self, origin: Origin) -> int:
        return len(self._idle.get(origin, ()))

    async def acquire(
        self, origin: Origin, connect_timeout: float | None, *, fresh: bool = False
    ) -> UpstreamConnection:
        """A connection to `origin`: an idle one (`reused` set) unless `fresh`, else a
        new one. Every connection acquired must be given back with `release`."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        if self._busy >= self._limit or self._turns:
            await self._wait_turn()
        self._busy += 1
        idle = self._idle.get(origin)
        while idle and not fresh:
            conn = idle.pop()
            if not conn.closed:
                conn.busy = True
                conn.reused = True
                return conn
        try:
            conn = await self._connect(origin, connect_timeout)
        except BaseException:
            self._busy -= 1
            self._next_turn()
            raise
        conn.busy = True
        return conn

    async def _wait_turn(self) -> None:
        assert self._loop is not None
        turn = self._loop.create_future()
        self._turns.append(turn)
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                self._next_turn()  # given a turn while being cancelled: pass it on
            else:
                self._turns.remove(turn)
            raise

    def _next_turn(self) -> None:
        while self._turns and self._busy < self._limit:
            turn = self._turns.popleft()
            if not turn.done():
                turn.set_result(None)
                return

    async def _connect(self, origin: Origin, seconds: float | None) -> UpstreamConnection:
        loop = self._loop
        assert loop is not None
        try:
            # anyio's deadline, not asyncio.wait_for: on Python 3.11 that can swallow a
            # cancellation arriving as the connection completes (the client left, and
            # the request would go on without it)
            with anyio.fail_after(seconds):
                _, conn = await loop.create_connection(
                    lambda: UpstreamConnection(self, origin, loop), origin.host, origin.port
                )
        except TimeoutError:
            raise UpstreamError(
                f"cannot connect to {origin.host_header}: no connection within {seconds:g}s"
            ) from None
        except OSError as exc:
            raise UpstreamError(f"cannot connect to {origin.host_header}: {exc}") from None
        return conn

    def release(self, conn: UpstreamConnection) -> None:
        """Give `conn` back: idle again if its answer ended cleanly and it may be kept,
        closed otherwise."""
        conn.finish()
        conn.busy = False
        self._busy -= 1
        if (
            self._closed
            or not conn.complete
            or not conn.keep_alive
            or conn.error is not None
            or conn.reading_paused
            or conn.closed
        ):
            conn.abort()
        else:
            loop = conn._loop
            conn.idle_since = loop.time()
            self._idle.setdefault(conn.origin, []).append(conn)
            if self._sweeper is None:
                self._sweeper = loop.call_later(self._keepalive, self._sweep)
        if self._turns:
            self._next_turn()

    def lost(self, conn: UpstreamConnection) -> None:
        """A connection closed (either side): it is no longer idle."""
        idle = self._idle.get(conn.origin)
        if idle and conn in idle:
            idle.remove(conn)

    def _sweep(self) -> None:
        self._sweeper = None
        loop = self._loop
        assert loop is not None
        cutoff = loop.time() - self._keepalive
        remaining = False
        for conns in self._idle.values():
            while conns and conns[0].idle_since <= cutoff:
                conns.pop(0).abort()
            remaining = remaining or bool(conns)
        if remaining:
            self._sweeper = loop.call_later(self._keepalive / 4, self._sweep)

    def close(self) -> None:
        """Close every idle connection; busy ones close when they are released."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conns in list(self._idle.values()):
            for conn in list(conns):
                conn.abort()
        self._idle.clear()
