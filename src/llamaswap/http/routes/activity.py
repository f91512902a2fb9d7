"""The activity store's API, in llama-swap's shapes (`internal/server/apigroup.go`).

- `GET /api/metrics/activity`: `{data, page, limit, total, total_pages}`, newest first;
  filters in `llamaswap.store.query`; a bad one is a 400 naming it (`error.param`).
- `GET /api/metrics/stats[?model=]`: totals and the prompt/generation speed histograms.
- `GET /api/captures/<id>`: what activity row `<id>` sent and got, while its capture is kept.
- `POST /api/inflight/<id>/cancel`: cancel a request in flight (`http/inflight.py`, rule 5).
"""

from __future__ import annotations

from aiohttp import web

from llamaswap.store import ActivityFilter, BadFilter, parse_query

from .. import activity
from ..activity import ACTIVITY
from ..errors import error_body, error_response
from ..inflight import INFLIGHT, install


def add_routes(app: web.Application) -> None:
    activity.install(app)
    install(app)
    app.router.add_get("/api/metrics/activity", list_activity)
    app.router.add_get("/api/metrics/stats", activity_stats)
    app.router.add_get("/api/captures/{id}", capture)
    app.router.add_post("/api/inflight/{id}/cancel", cancel_inflight)


def bad_filter(error: BadFilter) -> web.Response:
    """A 400 whose OpenAI-shaped body names the parameter in `error.param`."""
    body = error_body(400, str(error))
    body["error"]["param"] = error.field  # type: ignore[index]
    return web.json_response(body, status=400)


async def list_activity(request: web.Request) -> web.Response:
    params = {name: request.query.getall(name) for name in request.query}
    try:
        query = parse_query(params)
    except BadFilter as error:
        return bad_filter(error)
    page = await request.app[ACTIVITY].page(query)
    return web.json_response(page)


async def activity_stats(request: web.Request) -> web.Response:
    model = request.query.get("model", "").strip()
    stats = await request.app[ACTIVITY].stats(ActivityFilter(models=(model,) if model else ()))
    return web.json_response(stats)


async def capture(request: web.Request) -> web.Response:
    try:
        capture_id = int(request.match_info["id"])
    except ValueError:
        return error_response(request, 400, "invalid capture ID")
    data = await request.app[ACTIVITY].capture(capture_id)
    if data is None:
        return error_response(request, 404, "capture not found")
    return web.Response(body=data, content_type="application/json")


async def cancel_inflight(request: web.Request) -> web.Response:
    tracker = request.app[INFLIGHT]
    entry_id = request.match_info["id"]
    entry = tracker.entry(entry_id)
    if entry is None:
        return error_response(request, 404, "inflight request not found")
    if entry.req_headers.get("Upgrade", "").lower() == "websocket":
        return error_response(request, 409, "a websocket cannot be cancelled; its client closes it")
    tracker.cancel(entry_id)
    return web.json_response({"msg": "ok"})
