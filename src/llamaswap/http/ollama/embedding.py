"""`POST /api/embed` and the older `POST /api/embeddings`, through `/v1/embeddings`.

`/api/embed` answers unit-length vectors (cut to `dimensions` first), as Ollama does;
`/api/embeddings` answers the upstream's vector as it is. An empty input loads the
model and answers no vectors, like Ollama.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio
from aiohttp import web

from llamaswap.scheduling import RoutingError

from ..proxy import Exchange, cut_short
from ..service import service_of
from .dispatch import held, recorded, reserved, upstream_body
from .errors import ollama_error, routing_error
from .from_openai import (
    UpstreamFailed,
    embedding_vectors,
    nanoseconds,
    normalised,
    prompt_tokens,
)
from .incoming import OllamaRequest, Refused, bad_request, read_request
from .to_openai import BadOllamaRequest, embed_call, embed_inputs
from .upstream import UpstreamError, document, opened

# The answer from the upstream's result and the moment the model was ready.
Shape = Callable[[dict[str, Any], float], dict[str, Any]]


async def embed(request: web.Request) -> web.StreamResponse:
    started = time.monotonic()
    try:
        parsed = await read_request(request, service_of(request))
        inputs = embed_inputs(parsed.document.get("input"))
        dimensions = _dimensions(parsed.document.get("dimensions"))
    except Refused as refused:
        return refused.response
    except BadOllamaRequest as error:
        return bad_request(error)

    def shape(result: dict[str, Any], granted: float) -> dict[str, Any]:
        vectors = [normalised(v, dimensions) for v in embedding_vectors(result)]
        answer: dict[str, Any] = {"model": parsed.name, "embeddings": vectors}
        answer["total_duration"] = nanoseconds(time.monotonic() - started)
        answer["load_duration"] = nanoseconds(granted - started)
        tokens = prompt_tokens(result)
        if tokens:
            answer["prompt_eval_count"] = tokens
        return answer

    empty = {"model": parsed.name, "embeddings": []}
    return await _embeddings(request, parsed, inputs, shape, empty)


async def embeddings(request: web.Request) -> web.StreamResponse:
    """The older endpoint: one `prompt`, one vector, no normalisation."""
    try:
        parsed = await read_request(request, service_of(request))
    except Refused as refused:
        return refused.response
    prompt = parsed.document.get("prompt") or ""
    if not isinstance(prompt, str):
        return ollama_error(400, "prompt must be a string")

    def shape(result: dict[str, Any], _granted: float) -> dict[str, Any]:
        vectors = embedding_vectors(result)
        return {"embedding": vectors[0] if vectors else []}

    return await _embeddings(request, parsed, [prompt] if prompt else [], shape, {"embedding": []})


def _dimensions(value: Any) -> int | None:
    if value is None or value == 0:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise BadOllamaRequest("dimensions must be a positive integer")


async def _embeddings(
    request: web.Request,
    parsed: OllamaRequest,
    inputs: list[str],
    shape: Shape,
    empty: dict[str, Any],
) -> web.StreamResponse:
    service = service_of(request)
    exchange = Exchange()
    with reserved(service, parsed.target), recorded(service, request, parsed.target, exchange):
        call = embed_call(inputs, parsed.target.requested)
        body = await upstream_body(service, parsed.target, call.body)
        try:
            async with held(request, service, parsed.target, keep_alive=parsed.keep_alive) as hold:
                granted = time.monotonic()
                lease = hold.lease
                if not inputs:  # Ollama's load idiom
                    exchange.status = 200
                    return web.json_response(empty)
                with lease.scope if lease is not None else anyio.CancelScope():
                    async with opened(service.client, hold.destination, call.path, body) as answer:
                        result = await document(answer, exchange)
                    exchange.status = 200
                    return web.json_response(shape(result, granted))
                assert lease is not None, "only a lease's scope is ever cancelled"
                exchange.status = 503
                return ollama_error(503, cut_short(lease.model, lease.revoked))
        except RoutingError as error:
            exchange.status = error.status
            return routing_error(error)
        except UpstreamError as error:
            exchange.status = error.status
            return ollama_error(error.status, error.message)
        except UpstreamFailed as error:
            exchange.status = 502
            return ollama_error(502, str(error))
