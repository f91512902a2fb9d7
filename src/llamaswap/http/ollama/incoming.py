"""Reading an Ollama request: the JSON body, the model it names, its keep-alive.

Errors come back in Ollama's words and statuses: 400 for a body or field Ollama would
refuse, 404 `model "x" not found, try pulling it first` for a name nothing serves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..naming import NoSelectorTarget, Target
from ..service import Service
from .durations import DurationError, keep_alive_seconds
from .errors import ollama_error
from .names import OllamaModelNotFound, resolve_ollama
from .to_openai import BadOllamaRequest


class Refused(Exception):
    """The request is answered with this error before anything else happens."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.text)
        self.response = response


@dataclass(frozen=True)
class OllamaRequest:
    document: dict[str, Any]
    name: str  # the model as the client named it (echoed in every answer)
    target: Target
    keep_alive: float | None  # seconds for router.lease; None: the model's ttl
    streaming: bool


async def read_document(request: web.Request) -> dict[str, Any]:
    body = await request.read()
    if not body.strip():
        raise Refused(ollama_error(400, "missing request body"))
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise Refused(ollama_error(400, f"invalid JSON: {exc}")) from None
    if not isinstance(document, dict):
        raise Refused(ollama_error(400, "the request body must be a JSON object"))
    return document


def model_name(document: dict[str, Any]) -> str:
    name = document.get("model") or document.get("name")  # `name`: Ollama's old field
    if not isinstance(name, str) or not name.strip():
        raise Refused(ollama_error(400, "model is required"))
    return name


def target_of(service: Service, name: str) -> Target:
    try:
        return resolve_ollama(service, name)
    except OllamaModelNotFound as exc:
        raise Refused(ollama_error(404, str(exc))) from None
    except NoSelectorTarget as exc:
        raise Refused(ollama_error(503, str(exc))) from None


async def read_request(request: web.Request, service: Service) -> OllamaRequest:
    """Parse and route a model request (chat, generate, embed); raises Refused."""
    document = await read_document(request)
    name = model_name(document)
    try:
        keep_alive = keep_alive_seconds(document.get("keep_alive"))
    except DurationError as exc:
        raise Refused(ollama_error(400, str(exc))) from None
    target = target_of(service, name)
    return OllamaRequest(
        document, name, target, keep_alive, streaming=document.get("stream") is not False
    )


def bad_request(error: BadOllamaRequest) -> web.Response:
    return ollama_error(400, str(error))
