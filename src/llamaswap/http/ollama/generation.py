"""`POST /api/chat` and `POST /api/generate`.

A request with messages (or a prompt) is translated to OpenAI, sent through the router
like any `/v1` request (queueing, 429, swaps, the request's `keep_alive`) and its answer
translated back as it streams. Without messages (or with an empty prompt) nothing is
generated: the model is loaded and `done_reason` is "load" (Ollama's preload idiom); with
`keep_alive: 0` as well, a model that is serving is released to unload as soon as it is
idle and `done_reason` is "unload" (a model that is not serving is left as it is).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import anyio
from aiohttp import web

from llamaswap.scheduling import ModelNotLoaded, RoutingError

from .. import stalls
from ..naming import LocalTarget
from ..proxy import CLIENT_CLOSED, Exchange, cut_short
from ..service import Service, service_of
from .answer import Answer
from .dispatch import held, recorded, reserved, upstream_body
from .errors import routing_error
from .from_openai import Kind, Reply, UpstreamFailed, created_at
from .incoming import OllamaRequest, Refused, bad_request, read_request
from .to_openai import BadOllamaRequest, UpstreamCall, chat_call, generate_call
from .upstream import UpstreamError, events, opened


async def chat(request: web.Request) -> web.StreamResponse:
    return await _generation(request, "chat")


async def generate(request: web.Request) -> web.StreamResponse:
    return await _generation(request, "generate")


def nothing_to_generate(kind: Kind, document: dict[str, Any]) -> bool:
    """Ollama's load idiom: no messages for chat, an empty prompt for generate."""
    if kind == "chat":
        return not document.get("messages")
    return not document.get("prompt")


def idle_answer(kind: Kind, name: str, reason: str) -> dict[str, Any]:
    """The answer to a load or unload: done, nothing generated."""
    answer: dict[str, Any] = {"model": name, "created_at": created_at()}
    if kind == "chat":
        answer["message"] = {"role": "assistant", "content": ""}
    else:
        answer["response"] = ""
    answer.update(done=True, done_reason=reason)
    return answer


async def _generation(request: web.Request, kind: Kind) -> web.StreamResponse:
    started = time.monotonic()
    service = service_of(request)
    try:
        parsed = await read_request(request, service)
    except Refused as refused:
        return refused.response
    call = None
    if not nothing_to_generate(kind, parsed.document):
        upstream_name = parsed.target.requested
        try:
            if kind == "chat":
                call = chat_call(parsed.document, upstream_name)
            else:
                call = generate_call(parsed.document, upstream_name)
        except BadOllamaRequest as error:
            return bad_request(error)
    exchange = Exchange()
    with reserved(service, parsed.target), recorded(service, request, parsed.target, exchange):
        if call is None:
            return await _load_or_unload(service, request, parsed, kind, exchange)
        reply = Reply(kind, parsed.name, started)
        answer = Answer(request, exchange, streaming=parsed.streaming)
        return await _converse(service, request, parsed, call, reply, answer)


async def _load_or_unload(
    service: Service, request: web.Request, parsed: OllamaRequest, kind: Kind, exchange: Exchange
) -> web.StreamResponse:
    unload = parsed.keep_alive == 0
    target = parsed.target
    try:
        if isinstance(target, LocalTarget) and unload:
            # Only a model that is serving is released: one that is not needs no unload,
            # and loading it just to unload it would be a swap for nothing.
            with contextlib.suppress(ModelNotLoaded):
                async with service.router.lease(target.model_id, keep_alive=0, may_load=False):
                    pass
        elif isinstance(target, LocalTarget):
            async with service.router.lease(target.model_id, keep_alive=parsed.keep_alive):
                pass
    except RoutingError as error:
        exchange.status = error.status
        return routing_error(error)
    exchange.status = 200
    return web.json_response(idle_answer(kind, parsed.name, "unload" if unload else "load"))


async def _converse(
    service: Service,
    request: web.Request,
    parsed: OllamaRequest,
    call: UpstreamCall,
    reply: Reply,
    answer: Answer,
) -> web.StreamResponse:
    body = await upstream_body(service, parsed.target, call.body)
    try:
        async with held(request, service, parsed.target, keep_alive=parsed.keep_alive) as hold:
            reply.granted = time.monotonic()
            lease = hold.lease
            with lease.scope if lease is not None else anyio.CancelScope():
                reply.sent = time.monotonic()
                async with opened(service.client, hold.destination, call.path, body) as response:
                    async for chunk in events(response, answer.exchange):
                        for frame in reply.feed(chunk):
                            await answer.frame(frame)
                for frame in reply.final(streamed=answer.streaming):
                    await answer.frame(frame)
                return await answer.finish()
            assert lease is not None, "only a lease's scope is ever cancelled"
            return await answer.fail(503, cut_short(lease.model, lease.revoked))
    except RoutingError as error:
        answer.exchange.status = error.status
        return routing_error(error)
    except UpstreamError as error:
        return await answer.fail(error.status, error.message)
    except UpstreamFailed as error:
        return await answer.fail(500, str(error))
    except stalls.ClientStalled:
        return answer.as_sent()
    except ConnectionError:  # the client went away while we wrote to it
        answer.exchange.status = CLIENT_CLOSED
        return answer.as_sent()
