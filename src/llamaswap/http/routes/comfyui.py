"""`/comfyui/...`: ComfyUI's web app and API through the fixed model `comfyui_auto` (§2.9).

Rules (llama-swap's `handleComfyUI`):

1. `/comfyui` redirects to `/comfyui/` with its query: 301 for GET and HEAD, 308 for
   other methods (so a POST stays a POST).
2. `comfyui_auto` must be a local model; otherwise every `/comfyui/...` path is a 404.
3. Only the root, `/comfyui/`, may load the model. Any other path (assets, API calls,
   the websocket) is forwarded only while the model is ready, else it is a 409 and
   nothing starts: a browser tab left open after an unload must not load it again.
4. The `/comfyui` prefix is stripped and the rest of the path is forwarded as the
   client escaped it (`%2F` stays `%2F`), query included, body untouched.
5. The model always has `ignoreWebsockets` and a concurrency limit of at least 50
   (set when the config is built), so its websocket never holds it and a page's many
   parallel asset requests are not refused.
"""

from __future__ import annotations

from aiohttp import web

from llamaswap.config.build_models import COMFYUI_MODEL

from ..errors import error_response
from ..passthrough import climbs, forward_untouched
from ..service import service_of

PREFIX = "/comfyui"


def add_routes(app: web.Application) -> None:
    app.router.add_route("*", PREFIX, to_root)
    app.router.add_route("*", PREFIX + "/{tail:.*}", comfyui)


def _raw_query(request: web.Request) -> str:
    return request.raw_path.partition("?")[2]


async def to_root(request: web.Request) -> web.StreamResponse:
    """Rule 1."""
    query = _raw_query(request)
    location = PREFIX + "/" + (f"?{query}" if query else "")
    if request.method in ("GET", "HEAD"):
        raise web.HTTPMovedPermanently(location)
    raise web.HTTPPermanentRedirect(location)


def only_root_refusal() -> str:
    return f"model {COMFYUI_MODEL} is not loaded; only {PREFIX}/ can start it"


async def comfyui(request: web.Request) -> web.StreamResponse:
    service = service_of(request)
    if COMFYUI_MODEL not in service.config.models:
        return error_response(request, 404, f"local model {COMFYUI_MODEL} not found")
    raw_path = request.raw_path.partition("?")[0]
    rest = raw_path[len(PREFIX) :]
    if climbs(rest):
        return error_response(request, 400, f"path segments '..' are not allowed under {PREFIX}")
    query = _raw_query(request)
    tail = rest + (f"?{query}" if query else "")
    root = "/" + request.match_info["tail"].removeprefix("/") == "/"
    refusal = None if root else only_root_refusal()
    return await forward_untouched(request, COMFYUI_MODEL, tail, refusal=refusal)
