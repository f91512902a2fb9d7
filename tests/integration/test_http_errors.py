"""Errors as the issue lists them: 404 unknown model or no model, 400 bad JSON, 413 body
too large, 429 with Retry-After, 502 upstream unreachable, 5xx start failure with its
reason, 503 shutting down; always `{"error": {"message", "type", "code"}}` unless Accept
asks for plain text or HTML."""

from __future__ import annotations

import json

import aiohttp
import anyio
import pytest

from llamaswap.http.service import DEFAULT_MAX_BODY

from .helpers import free_port
from .http_helpers import (
    CHAT,
    SseEvent,
    assert_error,
    chat,
    error_of,
    reasoning_text,
    sse_events,
    watching,
)
from .server import config_yaml, fake_model, running_server

pytestmark = pytest.mark.anyio


async def test_request_errors_and_their_formats() -> None:
    yaml = config_yaml(fake_model("a", extra="aliases: [al]"))
    async with running_server(yaml, max_body=4096) as server, server.client() as http:
        url = server.url
        # unknown model: 404 on every way of naming a model
        async with http.post(url + CHAT, json=chat("nope")) as response:
            message = await error_of(response, 404)
            assert "nope" in message
        async with http.get(url + "/props?model=nope") as response:
            await error_of(response, 404)
        form = aiohttp.FormData()
        form.add_field("model", "nope")
        form.add_field("file", b"x", filename="f.wav")
        async with http.post(url + "/v1/audio/transcriptions", data=form) as response:
            await error_of(response, 404)

        # bad JSON, not an object: 400; no model, empty model: 404 (as llama-swap)
        for raw, status in (
            (b"{not json", 400),
            (b"[1, 2]", 400),
            (b'"a"', 400),
            (b"{}", 404),
            (b'{"model": ""}', 404),
            (b'{"messages": []}', 404),
            (b"", 404),
        ):
            async with http.post(
                url + CHAT, data=raw, headers={"Content-Type": "application/json"}
            ) as response:
                await error_of(response, status)
        async with http.get(url + "/v1/audio/voices") as response:
            await error_of(response, 404)
        form = aiohttp.FormData()
        form.add_field("language", "en")
        form.add_field("file", b"x", filename="f.wav")
        async with http.post(url + "/v1/audio/transcriptions", data=form) as response:
            await error_of(response, 404)
        # none of that started anything
        assert server.service.router.model_state("a") == "stopped"

        # formats follow Accept
        async with http.post(
            url + CHAT, json=chat("nope"), headers={"Accept": "text/plain"}
        ) as response:
            assert response.status == 404
            assert response.content_type == "text/plain"
            text = await response.text()
            assert text.endswith(": " + text.split(": ", 1)[1]) and "nope" in text
        async with http.post(
            url + CHAT, json=chat("nope"), headers={"Accept": "text/html"}
        ) as response:
            assert response.status == 404
            assert response.content_type == "text/html"
            assert "<html>" in await response.text()
        async with http.post(
            url + CHAT, json={}, headers={"Accept": "text/html, text/plain"}
        ) as response:
            assert response.status == 404
            assert response.content_type == "text/plain"
        async with http.post(
            url + CHAT, json={}, headers={"Accept": "application/json"}
        ) as response:
            await error_of(response, 404)

        # request bodies are bounded: 413, on model routes and on /upstream
        big = {"model": "a", "pad": "x" * 5000}
        async with http.post(url + CHAT, json=big) as response:
            await error_of(response, 413)
        form = aiohttp.FormData()
        form.add_field("model", "a")
        form.add_field("file", b"x" * 5000, filename="f.wav")
        async with http.post(url + "/v1/audio/transcriptions", data=form) as response:
            await error_of(response, 413)
        async with http.post(url + "/upstream/a/v1/chat/completions", json=big) as response:
            await error_of(response, 413)
        assert server.service.router.model_state("a") == "stopped"
        # a body just under the limit is fine
        async with http.post(url + CHAT, json={"model": "al", "pad": "x" * 3000}) as response:
            assert response.status == 200

        # llamaswap's own routing misses are shaped too
        async with http.get(url + "/no/such/route") as response:
            await error_of(response, 404)
        async with http.get(url + CHAT) as response:
            await error_of(response, 405)
        # errors produced by the upstream pass through as they are
        async with http.post(
            url + "/v1/audio/speech", json={"model": "al", "input": "x"}
        ) as response:
            assert response.status == 400
            body = await response.json()
            assert body.get("src") != "llamaswap"
            assert "Invalid model: al" in body["error"]["message"]

        # valid JSON that is merely deeply nested is not a server crash
        deep = b'{"model": "nope", "x": ' + b"[" * 1500 + b"]" * 1500 + b"}"
        async with http.post(
            url + CHAT, data=deep, headers={"Content-Type": "application/json"}
        ) as response:
            text = await response.text()
            assert response.status in (400, 404), (response.status, text)
            assert_error(json.loads(text))


async def test_default_body_limit_is_64_mib() -> None:
    yaml = config_yaml(fake_model("a"))
    async with running_server(yaml) as server, server.client() as http:
        assert server.service.max_body == DEFAULT_MAX_BODY == 64 * 1024 * 1024
        body = b'{"model": "a", "pad": "' + b"x" * (64 * 1024 * 1024) + b'"}'
        try:
            async with http.post(
                server.url + CHAT, data=body, headers={"Content-Type": "application/json"}
            ) as response:
                await error_of(response, 413)
        except aiohttp.ClientOSError:
            pytest.fail("the server cut the connection instead of answering 413")
        assert server.service.router.model_state("a") == "stopped"


async def test_429_over_the_concurrency_limit_with_retry_after() -> None:
    yaml = config_yaml(fake_model("c", extra="concurrencyLimit: 1"))
    async with running_server(yaml) as server, server.client() as http, watching(server) as watch:
        async with anyio.create_task_group() as tg:
            results: list[int] = []

            async def slow() -> None:
                async with http.post(server.url + CHAT + "?wait=1.5", json=chat("c")) as response:
                    await response.read()
                    results.append(response.status)

            tg.start_soon(slow)
            await watch.until(lambda: server.service.router.snapshot.in_flight.get("c") == 1)
            for accept in ("application/json", "text/plain", "text/html"):
                async with http.post(
                    server.url + CHAT, json=chat("c"), headers={"Accept": accept}
                ) as response:
                    assert response.status == 429
                    assert response.headers.get("Retry-After") == "1"
                    # always JSON, whatever Accept says
                    assert response.content_type == "application/json"
                    assert_error(await response.json(), type_="rate_limit_error")
            # a streaming request is refused the same way, before any byte of a stream
            async with http.post(server.url + CHAT, json=chat("c", stream=True)) as response:
                assert response.status == 429
                assert response.headers.get("Retry-After") == "1"
        assert results == [200]
        async with http.post(server.url + CHAT, json=chat("c")) as response:
            assert response.status == 200


async def test_502_when_the_upstream_is_unreachable() -> None:
    closed = free_port()
    dead = fake_model("dead", extra="checkEndpoint: none\nsendLoadingState: true").replace(
        "proxy: http://127.0.0.1:${PORT}", f"proxy: http://127.0.0.1:{closed}"
    )
    async with running_server(config_yaml(dead)) as server, server.client() as http:
        async with http.post(server.url + CHAT, json=chat("dead")) as response:
            assert response.status == 502
            assert_error(await response.json(), type_="server_error")
        async with http.get(server.url + "/upstream/dead/health") as response:
            await error_of(response, 502)
        async with http.post(
            server.url + CHAT, json=chat("dead"), headers={"Accept": "text/plain"}
        ) as response:
            assert response.status == 502
            assert response.content_type == "text/plain"
        assert not server.service.router.snapshot.in_flight

        # with a loading-state stream already sent (status 200), the failure must still reach
        # the client: as an error event in the stream, not as a silently empty answer
        await server.service.router.unload()
        async with http.post(server.url + CHAT, json=chat("dead", stream=True)) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            events = await sse_events(response)
        assert "loading model: dead" in reasoning_text(events)
        errors = [e.json() for e in events if e.data.startswith("{") and "error" in e.json()]
        assert errors, [e.data for e in events]
        assert_error(errors[0], type_="server_error")
        assert events[-1].data == "[DONE]"


async def test_json_the_proxy_rewrites_is_forwarded_not_crashed_on() -> None:
    """Valid JSON with an escaped lone surrogate (clients send these when they cut an emoji in
    half): llama-swap rewrites `model` in place and forwards the rest untouched."""
    yaml = config_yaml(fake_model("a", extra="useModelName: up"))
    async with running_server(yaml) as server, server.client() as http:
        raw = b'{"model": "a", "messages": [{"role": "user", "content": "half \\ud83d emoji"}]}'
        async with http.post(
            server.url + CHAT, data=raw, headers={"Content-Type": "application/json"}
        ) as response:
            text = await response.text()
            assert response.status == 200, (response.status, text)
        seen = json.loads(json.loads(text)["request_body"])
        assert seen["model"] == "up"
        assert seen["messages"][0]["content"] == "half \ud83d emoji"


async def test_start_failure_is_5xx_with_the_reason() -> None:
    yaml = config_yaml(fake_model("broken", "--exit-after", "0", extra="sendLoadingState: true"))
    async with running_server(yaml) as server, server.client() as http:
        async with http.post(server.url + CHAT, json=chat("broken")) as response:
            text = await response.text()
            assert 500 <= response.status < 600, (response.status, text)
            message = assert_error(json.loads(text), type_="server_error")
        assert "broken" in message and "prematurely" in message, message
        async with http.post(server.url + "/api/models/load/broken") as response:
            assert 500 <= response.status < 600
            assert "prematurely" in assert_error(await response.json())
        # after a loading stream started, the reason arrives as an error event
        async with http.post(server.url + CHAT, json=chat("broken", stream=True)) as response:
            assert response.status == 200
            events = await sse_events(response)
        assert "loading model: broken" in reasoning_text(events)
        errors = [e.json() for e in events if e.data.startswith("{") and "error" in e.json()]
        assert len(errors) == 1, [e.data for e in events]
        assert "prematurely" in assert_error(errors[0], type_="server_error")
        assert events[-1].data == "[DONE]"
        # an unknown model is a plain 404 even for a streaming request
        async with http.post(server.url + CHAT, json=chat("nope", stream=True)) as response:
            await error_of(response, 404)
        assert not server.service.router.snapshot.in_flight


async def test_503_while_shutting_down() -> None:
    yaml = config_yaml(fake_model("slow", "--startup-delay", "5", extra="sendLoadingState: true"))
    async with running_server(yaml) as server, server.client() as http, watching(server) as watch:
        statuses: list[tuple[int, dict[str, object]]] = []
        streamed: list[list[SseEvent]] = []

        async def waiting() -> None:
            async with http.post(server.url + CHAT, json=chat("slow")) as response:
                statuses.append((response.status, await response.json()))

        async def waiting_streamed() -> None:
            async with http.post(server.url + CHAT, json=chat("slow", stream=True)) as response:
                assert response.status == 200
                streamed.append(await sse_events(response))

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiting)
            tg.start_soon(waiting_streamed)
            await watch.until(lambda: watch.state("slow") == "starting")
            await watch.until(lambda: server.service.router.snapshot.queued.get("slow") == 2)
            tg.start_soon(server.service.router.shutdown, 2)
        assert len(statuses) == 1
        status, body = statuses[0]
        assert status == 503, body
        assert_error(body, type_="server_error")
        # the streamed waiter got its loading stream, then the 503 as an error event
        events = streamed[0]
        errors = [e.json() for e in events if e.data.startswith("{") and "error" in e.json()]
        assert len(errors) == 1, [e.data for e in events]
        assert "shutting down" in assert_error(errors[0], type_="server_error")
        # and a request that arrives afterwards
        async with http.post(server.url + CHAT, json=chat("slow")) as response:
            await error_of(response, 503)
