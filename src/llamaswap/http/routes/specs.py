"""`GET /api/specs`: the lifecycle specs as JSON, for clients that draw them.

The web UI takes its state badges, their colours and which of Load/Unload applies in
each state from here (`llamaswap.fsm.view`), so no state is listed in the UI's code.
"""

from __future__ import annotations

from aiohttp import web

from llamaswap.fsm import shipped_spec
from llamaswap.fsm.view import spec_view

SPECS = ("process", "router")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/specs", specs)


async def specs(_request: web.Request) -> web.Response:
    body = {name: spec_view(shipped_spec(name)) for name in SPECS}
    return web.json_response(body, headers={"Cache-Control": "no-cache"})
