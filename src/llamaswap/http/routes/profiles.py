"""The UI's small JSON API: list and switch profiles, and the server's version (§1.10, §2.7).

Switching a profile only changes how names are resolved for requests that arrive
afterwards (see `llamaswap.http.naming`): nothing is loaded or unloaded, and requests
already routed keep their model. No profile is active at startup or after a reload.
"""

from __future__ import annotations

import json
import logging

from aiohttp import web

import llamaswap
from llamaswap.runtime.events import ProfileChanged

from ..errors import error_response
from ..service import Service, service_of

log = logging.getLogger("llamaswap.profiles")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/profiles", list_profiles)
    app.router.add_put("/api/profiles/active", set_active_profile)
    app.router.add_get("/api/version", version)


def active_profile(service: Service) -> str | None:
    """The active profile, if the current config still has it (else none is in effect)."""
    name = service.active_profile
    return name if name is not None and name in service.config.profiles else None


async def list_profiles(request: web.Request) -> web.Response:
    service = service_of(request)
    profiles = [
        {"id": name, "description": profile.description, "pins": dict(profile.pins)}
        for name, profile in sorted(service.config.profiles.items())
    ]
    return web.json_response({"active": active_profile(service), "profiles": profiles})


async def set_active_profile(request: web.Request) -> web.Response:
    """`{"name": "x"}` activates profile x; `{"name": null}` or `""` deactivates."""
    service = service_of(request)
    try:
        body = _first_json_value(await request.read())
    except ValueError:  # bad JSON or bad UTF-8
        return error_response(request, 400, "invalid profile request")
    if body is None:  # `null` decodes to an empty object in Go
        body = {}
    if not isinstance(body, dict):
        return error_response(request, 400, "invalid profile request")
    if "name" not in body:
        return error_response(request, 400, "profile name is required")
    name = body["name"]
    if name is not None and not isinstance(name, str):
        return error_response(request, 400, "profile name must be a string or null")
    if name and name not in service.config.profiles:
        return error_response(request, 404, f'profile "{name}" not found')
    if (name or None) != active_profile(service):  # an event only for a real change
        service.active_profile = name or None
        log.info("active profile changed to %r", name or "")
        service.bus.publish(ProfileChanged(service.active_profile))
    return web.json_response({"active": service.active_profile})


def _first_json_value(raw: bytes) -> object:
    """The first JSON value of the body, as Go's `json.Decoder.Decode` reads it (what
    follows it is not read)."""
    text = raw.decode("utf-8").lstrip(" \t\r\n")
    return json.JSONDecoder().raw_decode(text)[0]


async def version(_request: web.Request) -> web.Response:
    return web.json_response(
        {"version": llamaswap.__version__, "commit": "unknown", "build_date": "unknown"}
    )
