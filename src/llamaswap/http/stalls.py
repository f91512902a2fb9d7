"""Writes to a client that may have stopped reading (`clientWriteTimeout`).

`response.write` waits while the client's socket buffer is full. A client that never
reads would keep that wait, and with it the model's lease, forever: every swap away
from the model would queue behind it. So a write that cannot complete within the
timeout cuts the connection (abort: the unread buffer is dropped, not flushed), the
handler returns and the lease ends. A timer per write would cost about as much as
the write itself, so one is armed only for a write that may have to wait: the
transport is paused, or the data would take it past its high-water mark.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import TypeVar

import anyio
from aiohttp import web

from .service import service_of

log = logging.getLogger("llamaswap.http")
T = TypeVar("T")

# aiohttp adds a few bytes per write (chunked framing) to what the caller hands it.
FRAMING_SLACK = 64


class ClientStalled(Exception):
    """The client accepted no byte within the write timeout; the connection is cut."""


def write_timeout(request: web.Request) -> float | None:
    """The configured seconds, or None when writes may wait forever (0)."""
    seconds = service_of(request).config.client_write_timeout
    return seconds if seconds > 0 else None


def cannot_wait(request: web.Request, size: int) -> bool:
    """Will a write of `size` bytes return at once? True only when the transport is not
    paused and stays under its high-water mark after it (aiohttp waits only on a paused
    transport); when in doubt, False, and the timer is armed."""
    transport = request.transport
    if transport is None or transport.is_closing():
        return True  # the write fails at once
    if request.protocol.writing_paused:
        return False
    try:
        high = transport.get_write_buffer_limits()[1]
        return transport.get_write_buffer_size() + size + FRAMING_SLACK <= high
    except (AttributeError, NotImplementedError):
        return False


async def write(
    request: web.Request, response: web.StreamResponse, data: bytes, seconds: float | None
) -> None:
    """`response.write(data)`, cut after `seconds` without progress (ClientStalled)."""
    if seconds is None or cannot_wait(request, len(data)):
        await response.write(data)
        return
    await within(request, seconds, response.write(data))


async def write_eof(
    request: web.Request, response: web.StreamResponse, seconds: float | None
) -> None:
    """`response.write_eof()`, which flushes, under the same rule (the chunked
    terminator is the only thing it may still write)."""
    if seconds is None or cannot_wait(request, FRAMING_SLACK):
        await response.write_eof()
        return
    await within(request, seconds, response.write_eof())


async def within(request: web.Request, seconds: float | None, pending: Awaitable[T]) -> T:
    """Await `pending` (a write to this client); after `seconds`, cut the client."""
    if seconds is None:
        return await pending
    try:
        with anyio.fail_after(seconds):
            return await pending
    except TimeoutError:
        cut(request, seconds)
        raise ClientStalled(f"the client accepted nothing for {seconds:g}s") from None


def cut(request: web.Request, seconds: float) -> None:
    """Abort the connection of a client that stopped reading, and say so once."""
    peer = request.remote or "-"
    log.warning(
        "client %s stopped reading the answer to %s %s: nothing accepted for %gs; "
        "connection cut, the model is free again",
        peer,
        request.method,
        request.path,
        seconds,
    )
    if request.transport is not None:
        request.transport.abort()
