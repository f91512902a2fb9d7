"""Operator endpoints: health, running models, load/unload, and the /upstream passthrough."""

from __future__ import annotations

import re
from urllib.parse import unquote

from aiohttp import web

from llamaswap.fsm.names import PROCESS_ERROR, PROCESS_HOLDS_RESOURCES, ProcessState
from llamaswap.scheduling import RoutingError

from .. import inflight, sockets
from ..errors import error_response, routing_error_response
from ..extract import Inbound
from ..naming import PeerTarget
from ..passthrough import climbs, forward_untouched
from ..service import Service, service_of
from . import comfyui
from .inference import is_model_route
from .peers import forward_to_peer


def add_routes(app: web.Application) -> None:
    sockets.install(app)
    inflight.install(app)
    comfyui.add_routes(app)  # registered here: the route families are app.py's
    app.router.add_get("/health", health)
    app.router.add_get("/wol-health", health)
    app.router.add_get("/running", running)
    app.router.add_get("/unload", unload_all_plain)
    app.router.add_post("/api/models/unload", unload_all_json)
    app.router.add_post("/api/models/unload/{model:.+}", unload_one)
    app.router.add_post("/api/models/load/{model:.+}", load_one)
    # GET / is the Ollama health check, which sends browsers on to /ui (ollama/routes.py)
    app.router.add_get("/upstream", to_ui_models)
    app.router.add_route("*", "/upstream/{tail:.*}", upstream_passthrough)


async def to_ui_models(_request: web.Request) -> web.Response:
    raise web.HTTPFound("/ui/models")


async def health(_request: web.Request) -> web.Response:
    return web.Response(text="OK")


async def running(request: web.Request) -> web.Response:
    service = service_of(request)
    entries = []
    for model_id, model in service.config.models.items():
        state = service.router.model_state(model_id)
        if state not in PROCESS_HOLDS_RESOURCES and state not in PROCESS_ERROR:
            continue
        entry: dict[str, object] = {
            "model": model_id,
            "state": state,
            "reason": service.router.model_fault(model_id),
            "cmd": model.cmd,
            "proxy": model.proxy,
            "ttl": model.ttl,
            "name": model.name,
            "description": model.description,
        }
        entries.append(entry)
    return web.json_response({"running": entries})


async def unload_all_plain(request: web.Request) -> web.Response:
    await service_of(request).router.unload()
    return web.Response(text="OK")


async def unload_all_json(request: web.Request) -> web.Response:
    await service_of(request).router.unload()
    return web.json_response({"msg": "ok"})


def _local_model(service: Service, name: str) -> str | None:
    return service.config.resolve(name)


async def unload_one(request: web.Request) -> web.Response:
    service = service_of(request)
    name = request.match_info["model"]
    model_id = _local_model(service, name)
    if model_id is None:
        if service.config.peer_model(name) is not None:
            return error_response(request, 404, "no local server found for requested model")
        return error_response(request, 404, f"model {name!r} not found")
    await service.router.unload([model_id])
    return web.Response(text="OK")


async def load_one(request: web.Request) -> web.Response:
    """Load a model without sending it a request (same policy as a request)."""
    service = service_of(request)
    name = request.match_info["model"]
    model_id = _local_model(service, name)
    if model_id is None:
        return error_response(request, 404, f"model {name!r} not found")
    try:
        await service.router.load(model_id)
    except RoutingError as error:
        return routing_error_response(request, error)
    return web.json_response({"msg": "ok", "model": model_id, "state": ProcessState.READY})


def find_model_prefix(service: Service, segments: list[str]) -> tuple[str, int] | None:
    """The longest leading run of path segments naming a local model, alias or peer
    model: (that name, number of segments used)."""
    for count in range(len(segments), 0, -1):
        name = unquote("/".join(segments[:count]))
        if service.config.resolve(name) is not None or service.config.peer_model(name):
            return name, count
    return None


async def upstream_passthrough(request: web.Request) -> web.StreamResponse:
    """`/upstream/<model>/<path>`: raw passthrough that loads the model if needed (§2.8)."""
    service = service_of(request)
    raw = request.raw_path
    raw_path, _, query = raw.partition("?")
    rest_of_path = raw_path[len("/upstream/") :]
    if climbs(rest_of_path):
        return error_response(request, 400, "path segments '..' are not allowed under /upstream")
    pinned = _apply_profile(service, rest_of_path)
    if pinned is None:
        return error_response(request, 404, "model is disabled by the active profile")
    segments = pinned.split("/")
    found = find_model_prefix(service, segments)
    if found is None:
        return error_response(request, 404, "model not found")
    name, used = found
    rest = "/" + "/".join(segments[used:]) if len(segments) > used else ""
    if not rest:
        location = f"/upstream/{'/'.join(segments[:used])}/" + (f"?{query}" if query else "")
        if request.method in ("GET", "HEAD"):
            raise web.HTTPMovedPermanently(location)
        raise web.HTTPPermanentRedirect(location)
    tail = rest + (f"?{query}" if query else "")
    model_id = service.config.resolve(name)
    if model_id is None:
        peer = service.config.peer_model(name)
        assert peer is not None
        target = PeerTarget(peer[0], peer[1], peer[1])
        inbound = Inbound(peer[1], await request.read(), None, False)
        return await forward_to_peer(request, service, target, inbound, tail)
    # may it load the model? decided by the router, not from a stale read
    refusal = ignore_paths_refusal(model_id) if _ignored(service, rest) else None
    track_as = unquote(rest) if is_model_route(request.method, rest) else None
    return await forward_untouched(request, model_id, tail, refusal=refusal, track_as=track_as)


def ignore_paths_refusal(model_id: str) -> str:
    return f"model {model_id} is not loaded; path matches upstream.ignorePaths"


def _apply_profile(service: Service, path: str) -> str | None:
    """The path with the active profile's longest matching pin replaced (§2.8), or None
    when that pin disables the name."""
    profile = service.config.profiles.get(service.active_profile or "")
    if profile is None:
        return path
    for pin in sorted(profile.pins, key=len, reverse=True):
        if path == pin or path.startswith(pin + "/"):
            target = profile.pins[pin]
            return None if not target else target + path[len(pin) :]
    return path


def _ignored(service: Service, path: str) -> bool:
    """Does `upstream.ignorePaths` match the path, as written or as the upstream will
    understand it? Matching both means no spelling of a listed path (`%2e`, `//`, `/./`)
    can load the model, and nothing matched before stops matching."""
    candidates = (path, normalised_path(path))
    return any(
        re.search(pattern, candidate)
        for pattern in service.config.ignore_paths
        for candidate in candidates
    )


def normalised_path(path: str) -> str:
    """The path percent-decoded, with empty and `.` segments dropped and `..` applied
    (RFC 3986 §6.2.2, plus duplicate slashes): `/a//./b%2ejs` -> `/a/b.js`."""
    decoded = unquote(path)
    segments: list[str] = []
    for segment in decoded.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    trailing = "/" if decoded.endswith("/") and segments else ""
    return "/" + "/".join(segments) + trailing
