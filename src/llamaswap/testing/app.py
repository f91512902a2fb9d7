"""The fake upstream's HTTP server: routes, middlewares and the streaming engine.

Every request passes the same middlewares, outermost first:

1. log      - one `<METHOD> <path> <status>` line per request (unless `--silent`);
2. errors   - every failure becomes an OpenAI-shaped JSON error body, 404 and 405 included;
3. loading  - while `--startup-delay` runs, every path answers llama-server's 503 "Loading model";
4. read     - reads a non-multipart body once, parses it as JSON if it can, works out `wait` and
              whether the answer is a stream; a non-stream answer waits here, a stream waits
              after its headers are out (as simple-responder did);
5. fail     - `--fail-after`: counts successful inference answers and fails the rest with 500.

The endpoints are the `ROUTES` table at the end of this module. Streams are written one frame
per `write()`, which aiohttp hands straight to the socket (with TCP_NODELAY), so a client sees
each frame as its own chunk at the moment it was produced: llamaswap's chunk-timing tests
depend on that.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import BodyPartReader, web

from llamaswap.testing import bodies
from llamaswap.testing.bodies import JSON, Reply, StreamPlan, Timings, ToolCall
from llamaswap.testing.console import say
from llamaswap.testing.lifecycle import Lifecycle, crash
from llamaswap.testing.options import Options, parse_duration
from llamaswap.testing.slots import slot_handlers

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SHUTDOWN_GRACE = 0.1  # seconds in-flight requests get after SIGTERM before they are cancelled
_CLEANUP_LIMIT = 2.0
_HEADER_LIMIT = 1 << 20  # long headers (a huge Authorization, say) must not matter either
_NO_BODY_LIMIT = sys.maxsize  # "body size must not matter": aiohttp's default is 1 MiB
_SLOW_RESPOND_ECHO = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_TRUE = {"true", "1", "yes"}


class ApiError(Exception):
    """A request the fake refuses; turned into an OpenAI error body by the errors middleware."""

    def __init__(self, status: int, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


@dataclass
class State:
    opts: Options
    started: float  # time.monotonic() at process start
    created: int  # the same moment on the wall clock, for /v1/models
    reserved: int = 0  # inference answers counted against --fail-after
    first_healthy: float | None = None  # time.monotonic() of the first 200 on /health

    def loading(self) -> bool:
        return time.monotonic() < self.started + self.opts.startup_delay


@dataclass
class Exchange:
    """What the middlewares learned about one request, for its handler."""

    arrived: float
    raw: bytes = b""
    body: JSON | None = None  # the JSON object body, if there was one
    body_error: str | None = None  # why the body is not a JSON object, if it is not
    multipart: bool = False
    streaming: bool = False
    wait: float = 0.0
    stream: web.StreamResponse | None = None
    hung_up: bool = False  # the client closed the connection while we were writing


STATE = web.AppKey("llamaswap_fake_state", State)
_EXCHANGE = "llamaswap_fake_exchange"


def _state(request: web.Request) -> State:
    return request.app[STATE]


def _exchange(request: web.Request) -> Exchange:
    return cast(Exchange, request[_EXCHANGE])


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=bodies.dumps)


def _error(status: int, message: str, kind: str | None = None) -> web.Response:
    return _json(bodies.error(status, message, kind), status)


# --- middlewares ------------------------------------------------------------------------------


@web.middleware
async def _log(request: web.Request, handler: Handler) -> web.StreamResponse:
    exchange = Exchange(arrived=time.monotonic())
    request[_EXCHANGE] = exchange
    status, note = "-", ""
    try:
        response = await handler(request)
        status = str(response.status)
        note = " (client disconnected)" if exchange.hung_up else ""
        return response
    except BaseException as exc:  # logged, then re-raised untouched
        if exchange.stream is not None:
            status = str(exchange.stream.status)
        note = " (cancelled)" if isinstance(exc, asyncio.CancelledError) else f" ({exc!r})"
        raise
    finally:
        if not _state(request).opts.silent:
            say(f"{request.method} {request.rel_url.raw_path} {status}{note}")


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return _error(exc.status, exc.message, exc.kind)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = "File Not Found" if exc.status == 404 else exc.reason  # llama-server's words
        return _error(exc.status, reason)
    except ConnectionError:
        exchange = _exchange(request)
        if exchange.stream is not None and exchange.stream.prepared:
            exchange.hung_up = True
            return exchange.stream  # the client went away mid-stream; nothing left to tell it
        raise
    except Exception as exc:
        stream = _exchange(request).stream
        if stream is not None and stream.prepared:
            raise
        traceback.print_exc()  # a bug in the fake: say so loudly, on stderr
        return _error(500, f"fake upstream error: {exc!r}", "server_error")


@web.middleware
async def _loading(request: web.Request, handler: Handler) -> web.StreamResponse:
    if _state(request).loading():
        return _json(bodies.loading(), 503)
    return await handler(request)


@web.middleware
async def _read(request: web.Request, handler: Handler) -> web.StreamResponse:
    exchange = _exchange(request)
    exchange.multipart = request.content_type.startswith("multipart/")
    if request.body_exists and not exchange.multipart:
        exchange.raw = await request.read()
        if exchange.raw.strip():
            exchange.body, exchange.body_error = _parse_object(exchange.raw)
    exchange.wait = _requested_wait(request, exchange.body)
    exchange.streaming = request.path in _ALWAYS_STREAMS or (
        request.path in _MAY_STREAM and _wants_stream(request, exchange.body)
    )
    if exchange.wait and not exchange.streaming:
        await asyncio.sleep(exchange.wait)
    return await handler(request)


@web.middleware
async def _fail_after(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = _state(request)
    limit = state.opts.fail_after
    if limit is None or request.path not in _INFERENCE:
        return await handler(request)
    if state.reserved >= limit:
        message = f"fake upstream failure: --fail-after {limit} reached"
        return _error(500, message, "server_error")
    state.reserved += 1  # reserve first: concurrent requests must not overshoot the limit
    succeeded = False
    try:
        response = await handler(request)
        succeeded = response.status < 400
        return response
    finally:
        if not succeeded:
            state.reserved -= 1


def _parse_object(raw: bytes) -> tuple[JSON | None, str | None]:
    try:
        value = json.loads(raw)
    except ValueError as exc:  # includes UnicodeDecodeError
        return None, f"invalid JSON body: {exc}"
    if not isinstance(value, dict):
        return None, "the request body must be a JSON object"
    return value, None


def _requested_wait(request: web.Request, body: JSON | None) -> float:
    """`?wait=` (seconds or a Go duration) wins over a JSON `"wait"`; both default to none."""
    text = request.query.get("wait")
    value: Any = text if text is not None else (body or {}).get("wait")
    if value is None:
        return 0.0
    try:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError(f"not a duration: {value!r}")
        return parse_duration(str(value))
    except ValueError as exc:
        raise ApiError(400, f"invalid wait: {exc}") from None


def _wants_stream(request: web.Request, body: JSON | None) -> bool:
    if request.query.get("stream", "").lower() in _TRUE:
        return True
    return (body or {}).get("stream") is True


# --- streaming --------------------------------------------------------------------------------


async def _open_stream(request: web.Request, content_type: str) -> web.StreamResponse:
    exchange = _exchange(request)
    response = web.StreamResponse(
        headers={"Content-Type": content_type, "Cache-Control": "no-cache"}
    )
    exchange.stream = response
    await response.prepare(request)  # sends the headers now
    if exchange.wait:
        await asyncio.sleep(exchange.wait)
    return response


async def _play(request: web.Request, plan: StreamPlan) -> web.StreamResponse:
    """Write a streamed answer frame by frame: gaps, mid-stream crash and timings included."""
    opts, exchange = _state(request).opts, _exchange(request)
    response = await _open_stream(request, plan.content_type)
    for frame in plan.head:
        await response.write(frame)
    total = opts.chunks
    crash_after = (total + 1) // 2 if opts.crash_mid_stream else None
    if crash_after == 0:
        crash(0, total)
    first: float | None = None
    for i in range(total):
        if i and opts.chunk_gap:
            await asyncio.sleep(opts.chunk_gap)
        await response.write(plan.piece(i))
        if first is None:
            first = time.monotonic()
        if crash_after == i + 1:
            crash(i + 1, total)
    end = time.monotonic()
    first = end if first is None else first
    prompt_ms = (first - exchange.arrived) * 1000
    timings = Timings(bodies.PROMPT_TOKENS, prompt_ms, total, (end - first) * 1000)
    for frame in plan.tail(timings):
        await response.write(frame)
    await response.write_eof()
    return response


# --- helpers for handlers ---------------------------------------------------------------------


def _body(request: web.Request) -> JSON:
    """The request's JSON object (an empty body counts as `{}`), or a 400."""
    exchange = _exchange(request)
    if exchange.multipart:
        raise ApiError(400, "expected a JSON body, got multipart/form-data")
    if exchange.body_error is not None:
        raise ApiError(400, exchange.body_error)
    return exchange.body or {}


def _model(state: State, body: JSON) -> str:
    model = body.get("model")
    return model if isinstance(model, str) and model else state.opts.model


def _reply(
    request: web.Request, body: JSON, prefix: str, prompt_tokens: int = bodies.PROMPT_TOKENS
) -> Reply:
    state = _state(request)
    return Reply(
        model=_model(state, body),
        text=state.opts.respond,
        chunks=state.opts.chunks,
        prompt_tokens=prompt_tokens,
        id=bodies.new_id(prefix),
        reasoning=state.opts.reasoning,
        tool_call=_tool_call(state.opts, body),
    )


def _tool_call(opts: Options, body: JSON) -> ToolCall | None:
    """With `--tool-arguments`, a call to the first tool the request offers."""
    tools = body.get("tools")
    if opts.tool_arguments is None or not isinstance(tools, list) or not tools:
        return None
    first = tools[0] if isinstance(tools[0], dict) else {}
    function = first.get("function")
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str) or not name:
        raise ApiError(400, "the first tool has no function name")
    return ToolCall(bodies.new_id("call_"), name, opts.tool_arguments)


def _timings_now(request: web.Request) -> Timings:
    """Timings of a non-streamed answer: everything up to now was 'prompt processing'."""
    elapsed_ms = (time.monotonic() - _exchange(request).arrived) * 1000
    return Timings(bodies.PROMPT_TOKENS, elapsed_ms, _state(request).opts.chunks, 0.0)


def _debug(request: web.Request) -> JSON:
    """simple-responder's echo fields, which llama-swap's proxy tests assert on."""
    return {
        "responseMessage": _state(request).opts.respond,
        "request_body": _exchange(request).raw.decode("utf-8", "replace"),
        "h_content_length": request.headers.get("Content-Length", ""),
        "h_authorization": request.headers.get("Authorization", ""),
    }


def _include_usage(body: JSON) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _as_text(value: Any) -> str:
    """A JSON value as gjson's String() would give it: strings bare, missing as ''."""
    if value is None:
        return ""
    return value if isinstance(value, str) else bodies.dumps(value)


async def _read_form(request: web.Request) -> tuple[dict[str, str], dict[str, int]]:
    """A multipart body as (text fields, file sizes), counted without holding files in memory."""
    if not _exchange(request).multipart:
        raise ApiError(400, "expected a multipart/form-data body")
    fields: dict[str, str] = {}
    sizes: dict[str, int] = {}
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or part.name is None:
                continue
            if part.filename is None:
                fields[part.name] = await part.text()
                continue
            size = 0
            while chunk := await part.read_chunk():
                size += len(chunk)
            sizes[part.name] = size
    except (ValueError, AssertionError, RuntimeError) as exc:
        raise ApiError(400, f"invalid multipart body: {exc}") from None
    for name, text in fields.items():  # a file part sent without a filename still counts
        sizes.setdefault(name, len(text.encode()))
    return fields, sizes


def _positive_int(value: Any, default: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return default


# --- handlers: health and plain text ----------------------------------------------------------


async def health(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    if state.opts.never_healthy:
        return _json(bodies.loading(), 503)
    if state.first_healthy is None:
        # CLOCK_MONOTONIC is system-wide on Linux: benchmarks compare it with their own.
        state.first_healthy = time.monotonic()
        say(f"first healthy response at monotonic={state.first_healthy:.6f}")
    return _json({"status": "ok"})


async def root(request: web.Request) -> web.StreamResponse:
    return web.Response(text=f"{request.method} {request.path}")


async def test_text(request: web.Request) -> web.StreamResponse:
    return web.Response(text=_state(request).opts.respond)


async def env(request: web.Request) -> web.StreamResponse:
    lines = [_state(request).opts.respond, *(f"{k}={v}" for k, v in os.environ.items())]
    return web.Response(text="\n".join(lines) + "\n")


async def slow_respond(request: web.Request) -> web.StreamResponse:
    echo = request.query.get("echo") or _SLOW_RESPOND_ECHO
    try:
        delay = parse_duration(request.query.get("delay") or "100ms")
    except ValueError as exc:
        return web.Response(status=400, text=f"Invalid duration: {exc}")
    response = await _open_stream(request, "text/plain; charset=utf-8")
    for i, char in enumerate(echo):
        if i and delay:
            await asyncio.sleep(delay)
        await response.write(char.encode())
    await response.write_eof()
    return response


# --- handlers: metadata -----------------------------------------------------------------------


async def models(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    return _json(bodies.models_list(state.opts.model, state.created))


async def props(request: web.Request) -> web.StreamResponse:
    opts = _state(request).opts
    return _json(bodies.props(opts.model, opts.chunks))


async def voices(request: web.Request) -> web.StreamResponse:
    return _json({"voices": ["voice1"], "model": request.query.get("model", "")})


async def loras(request: web.Request) -> web.StreamResponse:
    return _json({"loras": []})


async def tasks_run(request: web.Request) -> web.StreamResponse:
    return _json({"ok": True, "path": request.path})


# --- handlers: inference ----------------------------------------------------------------------


async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = _body(request)
    reply = _reply(request, body, "chatcmpl-")
    if _exchange(request).streaming:
        return await _play(request, bodies.chat_stream(reply, _include_usage(body)))
    return _json({**bodies.chat_completion(reply, _timings_now(request)), **_debug(request)})


async def completions(request: web.Request) -> web.StreamResponse:
    body = _body(request)
    reply = _reply(request, body, "cmpl-")
    if _exchange(request).streaming:
        return await _play(request, bodies.text_completion_stream(reply, _include_usage(body)))
    return _json({**bodies.text_completion(reply, _timings_now(request)), **_debug(request)})


async def llama_completion(request: web.Request) -> web.StreamResponse:
    """llama.cpp's native /completion and /infill; several prompts give an array, like it."""
    body = _body(request)
    reply = _reply(request, body, "")
    prompt = body.get("prompt", "")
    if _exchange(request).streaming:
        return await _play(request, bodies.llama_completion_stream(reply, _as_text(prompt)))
    timings = _timings_now(request)
    if isinstance(prompt, list) and len(prompt) > 1 and all(isinstance(p, str) for p in prompt):
        return _json([bodies.llama_completion(reply, timings, p, i) for i, p in enumerate(prompt)])
    result = bodies.llama_completion(reply, timings, _as_text(prompt))
    return _json({**result, **_debug(request)})


async def embeddings(request: web.Request) -> web.StreamResponse:
    body = _body(request)
    inputs = bodies.embedding_inputs(body.get("input", body.get("content")))
    if inputs is None:
        raise ApiError(400, "'input' must be a string, a token list, or a non-empty list of them")
    encoding = body.get("encoding_format")
    fmt = encoding if isinstance(encoding, str) else None
    return _json(bodies.embeddings(inputs, _model(_state(request), body), fmt))


async def messages(request: web.Request) -> web.StreamResponse:
    body = _body(request)
    reply = _reply(request, body, "msg_", bodies.anthropic_input_tokens(body))
    if _exchange(request).streaming:
        return await _play(request, bodies.anthropic_stream(reply))
    return _json(bodies.anthropic_message(reply))


async def count_tokens(request: web.Request) -> web.StreamResponse:
    return _json({"input_tokens": bodies.anthropic_input_tokens(_body(request))})


async def responses(request: web.Request) -> web.StreamResponse:
    body = _body(request)
    reply = _reply(request, body, "resp_")
    if _exchange(request).streaming:
        return await _play(request, bodies.response_stream(reply))
    return _json(bodies.response_object(reply, reply.text))


async def rerank(request: web.Request) -> web.StreamResponse:
    body = _body(request)
    query, documents = body.get("query"), body.get("documents", body.get("texts"))
    if not isinstance(query, str):
        raise ApiError(400, '"query" must be a string')
    if not isinstance(documents, list):
        raise ApiError(400, '"documents" must be a list')
    texts = [d.get("text") if isinstance(d, dict) else d for d in documents]
    if not all(isinstance(t, str) for t in texts):
        raise ApiError(400, '"documents" must be strings or objects with a "text"')
    top_n = body.get("top_n")
    limit = top_n if isinstance(top_n, int) and not isinstance(top_n, bool) else None
    with_text = bool(body.get("return_documents") or body.get("return_text"))
    model = _model(_state(request), body)
    return _json(bodies.rerank(query, cast(list[str], texts), model, limit, with_text))


async def speech(request: web.Request) -> web.StreamResponse:
    expected = _state(request).opts.model
    model = _as_text(_body(request).get("model"))
    if model != expected:
        raise ApiError(400, f"Invalid model: {model}, expected: {expected}")
    return _json({"message": "ok"})


async def transcriptions(request: web.Request) -> web.StreamResponse:
    fields, sizes = await _read_form(request)
    model = fields.get("model", "")
    if not model:
        raise ApiError(400, "Missing model parameter")
    if "file" not in sizes:
        raise ApiError(400, "Error getting file: no 'file' part in the form")
    return _json(
        {
            "text": f"The length of the file is {sizes['file']} bytes",
            "model": model,
            "h_content_type": request.headers.get("Content-Type", ""),
            "h_content_length": request.headers.get("Content-Length", ""),
        }
    )


async def image_generations(request: web.Request) -> web.StreamResponse:
    body = _body(request)
    as_url = body.get("response_format") == "url"
    return _json(bodies.image_result(_positive_int(body.get("n"), 1), as_url))


async def image_edits(request: web.Request) -> web.StreamResponse:
    fields, _ = await _read_form(request)
    count = int(fields["n"]) if fields.get("n", "").isdigit() and int(fields["n"]) > 0 else 1
    return _json(bodies.image_result(count, fields.get("response_format") == "url"))


async def sd_image(request: web.Request) -> web.StreamResponse:
    return _json({"model": _as_text(_body(request).get("model")), "images": []})


# --- the application --------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    method: str
    paths: tuple[str, ...]
    handler: Handler
    inference: bool = False  # counted by --fail-after
    streams: bool = False  # may answer with SSE when asked to


ROUTES = (
    Route("GET", ("/",), root),
    Route("GET", ("/health", "/v1/health"), health),
    Route("GET", ("/test",), test_text),
    Route("GET", ("/env",), env),
    Route("GET", ("/slow-respond",), slow_respond),
    Route("GET", ("/v1/models", "/models"), models),
    Route("GET", ("/props",), props),
    Route("GET", ("/v1/audio/voices",), voices),
    Route("GET", ("/sdapi/v1/loras",), loras),
    Route("POST", ("/v1/tasks/run",), tasks_run),
    Route("POST", ("/v1/chat/completions", "/chat/completions"), chat_completions, True, True),
    Route("POST", ("/v1/completions", "/completions"), completions, True, True),
    Route("POST", ("/completion", "/infill"), llama_completion, True, True),
    Route("POST", ("/v1/embeddings", "/embeddings"), embeddings, True),
    Route("POST", ("/v1/messages",), messages, True, True),
    Route("POST", ("/v1/messages/count_tokens",), count_tokens),
    Route("POST", ("/v1/responses",), responses, True, True),
    Route("POST", ("/v1/rerank", "/rerank", "/v1/reranking", "/reranking"), rerank, True),
    Route("POST", ("/v1/audio/speech",), speech, True),
    Route("POST", ("/v1/audio/transcriptions",), transcriptions, True),
    Route("POST", ("/v1/images/generations",), image_generations, True),
    Route("POST", ("/v1/images/edits",), image_edits, True),
    Route("POST", ("/sdapi/v1/txt2img", "/sdapi/v1/img2img"), sd_image, True),
)
_INFERENCE = frozenset(p for r in ROUTES if r.inference for p in r.paths)
_MAY_STREAM = frozenset(p for r in ROUTES if r.streams for p in r.paths)
_ALWAYS_STREAMS = frozenset({"/slow-respond"})


def build_app(opts: Options, started: float) -> web.Application:
    app = web.Application(
        client_max_size=_NO_BODY_LIMIT,
        middlewares=[_log, _errors, _loading, _read, _fail_after],
    )
    created = int(time.time() - (time.monotonic() - started))
    app[STATE] = State(opts=opts, started=started, created=created)
    for route in ROUTES:
        for path in route.paths:
            app.router.add_route(route.method, path, route.handler)
    for method, path, handler in slot_handlers(opts):
        app.router.add_route(method, path, handler)
    return app


async def serve(opts: Options, life: Lifecycle) -> int:
    """Bind, announce, serve until a signal or timer says stop; returns the exit code."""
    exit_code = life.attach(asyncio.get_running_loop())
    runner = web.AppRunner(
        build_app(opts, life.started),
        access_log=None,
        handle_signals=False,
        handler_cancellation=True,  # a client that hangs up stops its stream, as in llama-server
        shutdown_timeout=SHUTDOWN_GRACE,
        max_line_size=_HEADER_LIMIT,
        max_field_size=_HEADER_LIMIT,
    )
    await runner.setup()
    site = web.TCPSite(runner, opts.host, opts.port, backlog=1024)
    try:
        await site.start()
    except OSError as exc:
        print(f"cannot listen on {opts.host}:{opts.port}: {exc}", file=sys.stderr, flush=True)
        await runner.cleanup()
        return 1
    port = runner.addresses[0][1]
    say(f"llamaswap fake upstream: model={opts.model} pid={os.getpid()} port={port}")
    code = await exit_code
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(runner.cleanup(), _CLEANUP_LIMIT)
    return code
