"""Between the handlers and the activity store: what a finished request carries for it.

Handlers call `new_tail` for their `Exchange` (a `CaptureTail` only while captures are
on) and `recording` for the `RequestFinished` fields the store needs. Both cost a few
attribute reads when captures are off; with them on, the capture holds references to
bodies that exist anyway and two small header dicts.

`install` opens the store when the application starts (`store.path`, or memory),
attaches its listener to the bus and runs its writer until the application stops,
when whatever is still pending is written.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from llamaswap.runtime.events import RequestCapture
from llamaswap.store import ActivityStore, CaptureTail
from llamaswap.store.captures import capture_limit

from .proxy import Exchange
from .scopes import KEY_NAME
from .service import SERVICE, service_of

ACTIVITY = web.AppKey("llamaswap_activity", ActivityStore)


def install(app: web.Application) -> None:
    """Keep one store on `app` (idempotent), opened and written while the app runs."""
    if ACTIVITY in app:
        return
    service = app[SERVICE]
    app[ACTIVITY] = ActivityStore(lambda: service.config, service.config.store_path)
    app.cleanup_ctx.append(_lifetime)


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    store, service = app[ACTIVITY], app[SERVICE]
    bus = service.bus
    await store.open()
    if service.config.probes and store.path:  # a file: figures from earlier runs
        service.router.recall_needs(await store.learned_needs())
    bus.add_listener(store.listen)
    writer = asyncio.get_running_loop().create_task(store.run(), name="activity-writer")
    try:
        yield
    finally:
        bus.remove_listener(store.listen)
        store.stop()
        try:
            await writer
        finally:
            await store.close()


def new_tail(request: web.Request) -> bytearray:
    """The `Exchange.tail` for a request: whole responses are kept while captures are on."""
    megabytes = service_of(request).config.capture_buffer
    return CaptureTail(capture_limit(megabytes)) if megabytes > 0 else bytearray()


def request_key_id(request: web.Request) -> str:
    """The `name` of the API key the request used ("" without apiKeys): its configured
    name, or `key-` and the first 8 hex digits of its SHA-256 (never the key itself)."""
    return str(request.get(KEY_NAME, ""))


def recording(
    request: web.Request, exchange: Exchange, body: bytes, *, recorded: bool
) -> dict[str, Any]:
    """The `RequestFinished` fields the activity store reads (`body`: what the client
    sent); `recorded` False leaves the request out of the store."""
    response = exchange.response
    fields: dict[str, Any] = {
        "content_type": response.headers.get("Content-Type", "") if response else "",
        "key_id": request_key_id(request),
        "recorded": recorded,
    }
    tail = exchange.tail
    if recorded and isinstance(tail, CaptureTail):
        fields["capture"] = RequestCapture(
            request_headers=request.headers,
            request_body=body,
            response_headers=response.headers if response else {},
            response_body=bytes(tail),
            response_bytes=len(tail) + tail.dropped,
        )
    return fields
