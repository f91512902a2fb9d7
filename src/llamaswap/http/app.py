"""The aiohttp application and the server that runs it inside our anyio task group."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import anyio
from aiohttp import web

from . import ollama
from .connections import ConnectionGuard, GuardedSite
from .middleware import MIDDLEWARES, cors_headers
from .policy import policy_of
from .routes import (
    activity,
    admin,
    events,
    hardware,
    inference,
    logs,
    metrics,
    models,
    profiles,
    specs,
    ui,
)
from .service import SERVICE, Service, new_client_session

ROUTE_FAMILIES = (
    inference,
    models,
    ollama,
    admin,
    events,
    ui,
    logs,
    metrics,
    profiles,
    specs,
    activity,
    hardware,
)


def build_app(service: Service) -> web.Application:
    app = web.Application(middlewares=MIDDLEWARES, client_max_size=service.max_body)
    app[SERVICE] = service
    app.cleanup_ctx.append(_client_session)
    app.on_response_prepare.append(cors_headers)
    for family in ROUTE_FAMILIES:
        family.add_routes(app)
    return app


async def _client_session(app: web.Application) -> AsyncIterator[None]:
    service = app[SERVICE]
    service.http_client = new_client_session()
    yield
    await service.http_client.close()
    service.http_client = None
    service.upstream_pool.close()


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled. handler_cancellation=True: a client that leaves cancels its
    handler, which frees its queue slot and closes the upstream connection. Connections
    are guarded (connections.py): a request-head deadline and a connection cap, both
    read from the running config. With `ssl_context` it serves HTTPS only; `host` ""
    is every interface, IPv4 and IPv6."""
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    try:
        service = app[SERVICE]
        guard = ConnectionGuard(lambda: policy_of(service.config))
        # Compressed bodies are inflated by aiohttp within the body limit and forwarded
        # decoded, without Content-Encoding (proxy.py), so the model can be read from them.
        site = GuardedSite(
            runner,
            host,
            port,
            guard=guard,
            backlog=1024,
            ssl_context=ssl_context,
            access_log=None,
        )
        await site.start()
        bound = [address for address in runner.addresses if isinstance(address, tuple)]
        task_status.started(int(bound[0][1]) if bound else port)
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()
