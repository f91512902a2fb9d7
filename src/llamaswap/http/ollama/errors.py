"""Errors in Ollama's shape: `{"error": "..."}` with the status Ollama would use.

Clients written for Ollama read only the `error` string (the Python client raises
`ResponseError(error, status_code)`), so llamaswap's routing errors keep their statuses
(404, 409, 429 with Retry-After, 500 for a failed start, 503) and their messages,
in this shape instead of OpenAI's. Once a stream has started, an error is one more
NDJSON line, as Ollama sends it.
"""

from __future__ import annotations

import json

from aiohttp import web

from llamaswap.scheduling import RoutingError, TooManyRequests


def ollama_error(
    status: int, message: str, *, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def routing_error(error: RoutingError) -> web.Response:
    headers = {"Retry-After": "1"} if isinstance(error, TooManyRequests) else None
    return ollama_error(error.status, str(error), headers=headers)


def error_line(message: str) -> bytes:
    return json.dumps({"error": message}).encode() + b"\n"
