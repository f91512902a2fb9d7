"""Reading the requested model (and whether the client wants a stream) from a request.

JSON bodies give `model` and `stream`; multipart forms (audio, image edits) give the
`model` field; GET requests give `?model=` and `?stream=true`. The body is read once,
bounded by the application's `client_max_size` (a larger one is a 413).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web


class BadRequest(Exception):
    """The request cannot be routed as sent (400)."""


@dataclass
class Inbound:
    """A model-routed request, read once."""

    model: str
    body: bytes
    json: dict[str, Any] | None  # the parsed body when it is a JSON object
    streaming: bool
    multipart: EmailMessage | None = None


def is_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Content-Type", "")


def is_multipart(request: web.Request) -> bool:
    return request.headers.get("Content-Type", "").startswith("multipart/form-data")


async def read_inbound(request: web.Request) -> Inbound:
    """Read the body and find the model; raises BadRequest (or 413 via aiohttp)."""
    body = await request.read()
    if request.method == "GET" or (not body and not is_json(request)):
        return Inbound(
            request.query.get("model", ""),
            body,
            None,
            request.query.get("stream", "") == "true",
        )
    if is_json(request):
        return _from_json(body)
    if is_multipart(request):
        return _from_multipart(request, body)
    form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
    fields = {**dict(request.query), **form}
    return Inbound(fields.get("model", ""), body, None, fields.get("stream", "") == "true")


def _from_json(body: bytes) -> Inbound:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("request body is nested too deeply") from None
    if not isinstance(document, dict):
        raise BadRequest("request body must be a JSON object")
    model = document.get("model", "")
    if not isinstance(model, str):
        raise BadRequest(f"'model' must be a string, not {type(model).__name__}")
    return Inbound(model, body, document, bool(document.get("stream", False)))


def _from_multipart(request: web.Request, body: bytes) -> Inbound:
    header = f"Content-Type: {request.headers['Content-Type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(header + body)
    if not isinstance(message, EmailMessage) or not message.is_multipart():
        raise BadRequest("malformed multipart/form-data body")
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str) and part.get_filename() is None:
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                fields[name] = payload.decode("utf-8", "replace")
    return Inbound(fields.get("model", ""), body, None, fields.get("stream", "") == "true", message)
