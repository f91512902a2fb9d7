"""Error responses in the shape clients expect.

Every error llamaswap itself produces is an OpenAI-shaped JSON body
`{"error": {"message", "type", "param", "code"}}` unless the client's `Accept` asks for
plain text or HTML (as llama-swap does). A 429 is always JSON with `Retry-After`.
"""

from __future__ import annotations

import html
import json

from aiohttp import web

from llamaswap.scheduling import RoutingError, TooManyRequests

SOURCE = "llamaswap"

# status -> (type, code), as llama-swap and OpenAI use them
_KINDS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "bad_request"),
    401: ("authentication_error", "unauthorized"),
    403: ("authentication_error", "forbidden"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    409: ("invalid_request_error", "conflict"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    502: ("server_error", "bad_gateway"),
    503: ("server_error", "service_unavailable"),
    504: ("server_error", "gateway_timeout"),
}


def kind_of(status: int) -> tuple[str, str]:
    if status in _KINDS:
        return _KINDS[status]
    if 400 <= status < 500:
        return ("invalid_request_error", "invalid_request")
    return ("server_error", "internal_error")


def error_body(status: int, message: str, code: str | None = None) -> dict[str, object]:
    error_type, default_code = kind_of(status)
    return {
        "src": SOURCE,
        "error": {
            "message": message,
            "type": error_type,
            "param": None,
            "code": code or default_code,
        },
    }


def error_response(
    request: web.Request | None,
    status: int,
    message: str,
    *,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    json_only: bool = False,
) -> web.Response:
    """An error in the format the client accepts (JSON unless it asks for text or HTML)."""
    accept = request.headers.get("Accept", "") if request is not None else ""
    if not json_only and "text/plain" in accept:
        return web.Response(
            status=status, text=f"{SOURCE}: {message}", content_type="text/plain", headers=headers
        )
    if not json_only and "text/html" in accept:
        page = f"<html><body><h1>{SOURCE}</h1><p>{html.escape(message)}</p></body></html>"
        return web.Response(status=status, text=page, content_type="text/html", headers=headers)
    return web.Response(
        status=status,
        body=json.dumps(error_body(status, message, code)).encode(),
        content_type="application/json",
        headers=headers,
    )


def routing_error_response(request: web.Request, error: RoutingError) -> web.Response:
    if isinstance(error, TooManyRequests):
        return error_response(
            request,
            429,
            str(error),
            code=error.code,
            headers={"Retry-After": "1"},
            json_only=True,
        )
    return error_response(request, error.status, str(error), code=error.code)


def sse_error_event(status: int, message: str, code: str | None = None) -> bytes:
    """The error as one SSE event, for streams whose 200 has already been sent."""
    return b"data: " + json.dumps(error_body(status, message, code)).encode() + b"\n\n"
