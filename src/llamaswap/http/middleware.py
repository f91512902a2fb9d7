"""The front door every request passes (§2.1-2.2): access log, error shaping, CORS
preflight, cross-site refusal, API keys, in that order.

One aiohttp middleware does all of it: each middleware layer costs a coroutine and a
wrapper per request, and this is the hot path. The rules (trusted proxies, allowed
origins) are precomputed per config in `policy`.
"""

from __future__ import annotations

import base64
import logging
import re
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from llamaswap.config.keys import KeyScope
from llamaswap.runtime.callers import CALLER

from .errors import error_response
from .policy import policy_of
from .scopes import KEY_NAME, find_scope, is_admin_route
from .service import service_of

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

access_log = logging.getLogger("llamaswap.access")

QUIET_PATHS = ("/wol-health", "/metrics")
# The web UI's own traffic (its event stream, log viewer, polling and files) is logged
# at DEBUG, so the terminal shows what clients and operators did, not the page's upkeep.
UI_PATHS = (
    *("/api/events", "/logs/stream", "/api/specs", "/api/metrics/", "/api/performance"),
    *("/api/hardware", "/api/captures/", "/ui/", "/favicon.ico"),
)
OPEN_PATHS = {("GET", "/health"), ("GET", "/wol-health"), ("GET", "/"), ("GET", "/favicon.ico")}
OPEN_PATHS |= {("HEAD", path) for _, path in OPEN_PATHS} | {("GET", "/upstream")}
OPEN_PATHS |= {("GET", "/api/specs")}  # the lifecycle specs are no secret (the UI's legend)
TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
DEFAULT_ALLOW_HEADERS = "Content-Type, Authorization, Accept, X-Requested-With"


def client_ip(request: web.Request) -> str:
    """The peer's address; X-Forwarded-For/X-Real-IP only from a trusted proxy."""
    return policy_of(service_of(request).config).client_ip(request)


@web.middleware
async def front_door(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One coroutine frame for every request: the checks are plain calls, the handler
    is awaited once (each middleware layer or helper coroutine costs a frame)."""
    started = time.monotonic()
    status, size = 499, 0  # 499: the client left before an answer (nginx's convention)
    try:
        try:
            refusal_or_scope = _refusal(request)
            if refusal_or_scope is None:
                response = await handler(request)
            elif isinstance(refusal_or_scope, KeyScope):
                # the key's scope rides with the request to the router's model check;
                # reset: a keep-alive connection serves its requests in one task
                token = CALLER.set(refusal_or_scope)
                try:
                    response = await handler(request)
                finally:
                    CALLER.reset(token)
            else:
                response = refusal_or_scope
        except Exception as exc:
            response = _shaped(request, exc)
        status, size = response.status, response.body_length
        if not size and isinstance(response, web.Response) and isinstance(response.body, bytes):
            size = len(response.body)
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        path = request.path
        if not path.startswith(QUIET_PATHS):
            access_log.log(
                logging.DEBUG if path.startswith(UI_PATHS) or path == "/ui" else logging.INFO,
                'Request %s "%s %s HTTP/%d.%d" %d %d "%s" %.3fs',
                client_ip(request),
                request.method,
                request.raw_path,
                request.version.major,
                request.version.minor,
                status,
                size,
                request.headers.get("User-Agent", "-"),
                time.monotonic() - started,
            )


def _refusal(request: web.Request) -> web.StreamResponse | KeyScope | None:
    """The answer for a request that goes no further (a preflight, a cross-site or
    unauthenticated request, a key without `admin` on an admin route); else the
    presented key's scope, or None when no keys are configured or the path is open.
    A body over the limit raises 413."""
    if request.method == "OPTIONS":
        return preflight(request)
    service = service_of(request)
    headers = request.headers
    if "Origin" in headers or "Sec-Fetch-Site" in headers:
        refused = policy_of(service.config).cross_site(request)
        if refused is not None:
            return error_response(request, 403, f"cross-site request refused: {refused}")
    declared = request.content_length
    if declared is not None and declared > service.max_body:
        raise web.HTTPRequestEntityTooLarge(service.max_body, declared)
    config = service.config
    if not config.api_keys or (request.method, request.path) in OPEN_PATHS:
        return None
    presented = presented_key(request)
    scope = find_scope(presented, config.key_scopes) if presented is not None else None
    if scope is None:
        return error_response(
            request,
            401,
            "unauthorized: invalid or missing API key",
            headers={"WWW-Authenticate": 'Basic realm="llamaswap"'},
        )
    if not scope.admin and is_admin_route(request.method, request.path):
        return error_response(
            request, 403, f"API key {scope.name!r} may not use {request.method} {request.path}"
        )
    request[KEY_NAME] = scope.name
    return scope


def _shaped(request: web.Request, exc: Exception) -> web.StreamResponse:
    """aiohttp's own errors (404, 405, 413, ...) and our bugs as OpenAI-shaped bodies;
    an HTTP exception below 400 (a redirect) is raised again."""
    if not isinstance(exc, web.HTTPException):
        logging.getLogger("llamaswap.http").exception(
            "%s %s failed", request.method, request.path, exc_info=exc
        )
        return error_response(request, 500, f"internal error: {type(exc).__name__}: {exc}")
    if exc.status < 400:
        raise exc
    message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
    if exc.status == 413:
        limit = service_of(request).max_body
        message = f"request body is larger than the limit of {limit} bytes"
    elif exc.status == 404:
        message = f"no route for {request.method} {request.path}"
    response = error_response(request, exc.status, message)
    if exc.status == 405 and "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response


def preflight(request: web.Request) -> web.Response:
    """Every OPTIONS request is a CORS preflight answered here, before authentication:
    204 with llama-swap's headers for an allowed origin (`*` when every origin is),
    403 for any other (llama-swap allows every origin)."""
    requested = request.headers.get("Access-Control-Request-Headers", "")
    allowed = [h.strip() for h in requested.split(",") if TOKEN.match(h.strip())]
    headers = {
        "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
        "Access-Control-Allow-Headers": ", ".join(allowed) or DEFAULT_ALLOW_HEADERS,
        "Access-Control-Max-Age": "86400",
    }
    origin = request.headers.get("Origin")
    if origin is not None:
        policy = policy_of(service_of(request).config)
        if not policy.origin_allowed(origin, request):
            return error_response(
                request, 403, f"cross-origin requests from {origin[:200]} are not allowed"
            )
        if policy.any_origin:
            headers["Access-Control-Allow-Origin"] = "*"
        else:
            headers["Access-Control-Allow-Origin"] = origin
            headers["Vary"] = "Origin"
    return web.Response(status=204, headers=headers)


async def cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Just before any response's headers go out (on_response_prepare, so proxied and
    streamed answers too): an origin that is not allowed keeps no
    Access-Control-Allow-Origin, wherever it came from (/v1/models echoes the Origin as
    llama-swap does; llama-server echoes it on every answer). Allowed origins get what
    llama-swap gives them."""
    origin = request.headers.get("Origin")
    if origin is None or request.method == "OPTIONS":
        return
    headers = response.headers
    if "Access-Control-Allow-Origin" in headers and not policy_of(
        service_of(request).config
    ).origin_allowed(origin, request):
        del headers["Access-Control-Allow-Origin"]
        headers.popall("Access-Control-Allow-Credentials", None)


def presented_key(request: web.Request) -> str | None:
    """The API key from Basic (the password), Bearer, or x-api-key, in that order, as
    llama-swap's `ExtractAPIKey` takes it: an Authorization header that yields no key
    (undecodable Basic, no `:`, an empty password or token) falls through to x-api-key."""
    authorization = request.headers.get("Authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "basic":
        try:
            user_and_key = base64.b64decode(value.strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            user_and_key = ""
        _, colon, key = user_and_key.partition(":")
        if colon and key:
            return key
    elif scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-api-key")


MIDDLEWARES = [front_door]
