"""The Ollama API through a real llamaswap server, driven by the official `ollama` client
(its AsyncClient: the server runs on this event loop) against fake upstreams on 127.0.0.1.

Covers listing, show, ps (with keep-alive deadlines), chat and generate (plain and
streaming, thinking, tool calls), embeddings, the load/unload idioms, keep_alive per
request through the router, errors in Ollama's shape (404, 400, 429, 5xx, 501, an
upstream that dies mid-stream), activity on the bus, and `GET /` for clients and
browsers. What the upstream receives is checked with a recording upstream.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import ollama
import pytest
from aiohttp import web

from llamaswap.http.usage import usage_of
from llamaswap.runtime.events import RequestFinished

from .http_helpers import recorded_model, watching
from .server import RunningServer, config_yaml, fake_model, running_server

pytestmark = pytest.mark.anyio

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather in a given city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TOGETHER = "groups: {both: {swap: false, members: [a, b]}}"  # both may run at once
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="


def client(server: RunningServer) -> ollama.AsyncClient:
    return ollama.AsyncClient(host=server.url, trust_env=False, timeout=30)


def user(text: str = "hi") -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def finished(events: list[Any], path: str) -> list[RequestFinished]:
    return [e for e in events if isinstance(e, RequestFinished) and e.path == path]


async def test_the_ollama_client_end_to_end() -> None:
    yaml = config_yaml(
        fake_model("a", "--respond", "pong", "--chunks", "3", extra="aliases: [a-alias]"),
        fake_model("emb"),
        fake_model("q:8b", "--respond", "q"),
    )
    async with running_server(yaml) as server, watching(server) as watch:
        api = client(server)
        listed = await api.list()
        names = [m.model for m in listed.models]
        assert names == ["a:latest", "emb:latest", "q:8b"]
        first = listed.models[0]
        assert first.modified_at is not None and first.modified_at.tzinfo is not None
        assert first.digest is not None and len(first.digest) == 64
        assert first.details is not None

        shown = await api.show("a:latest")
        assert shown.capabilities == ["completion"]
        assert shown.modelinfo == {"general.basename": "a"}

        answer = await api.chat(model="a:latest", messages=user())
        assert answer.model == "a:latest"
        assert answer.message.role == "assistant"
        assert answer.message.content == "pong" * 3
        assert answer.done and answer.done_reason == "stop"
        assert answer.eval_count == 3  # the fake's timings: predicted_n
        assert answer.prompt_eval_count == 25  # cache_n + prompt_n
        assert answer.eval_duration and answer.prompt_eval_duration
        assert answer.load_duration and answer.total_duration
        assert answer.total_duration >= answer.load_duration > 0  # this request loaded "a"

        parts = [part async for part in await api.chat(model="a", messages=user(), stream=True)]
        assert "".join(p.message.content or "" for p in parts) == "pong" * 3
        assert [p.done for p in parts] == [False, False, False, True]
        assert parts[-1].done_reason == "stop" and parts[-1].eval_count == 3

        generated = await api.generate(model="a-alias", prompt="hi", system="be brief")
        assert generated.response == "pong" * 3 and generated.done_reason == "stop"
        pieces = [p async for p in await api.generate(model="a:7b", prompt="hi", stream=True)]
        assert "".join(p.response or "" for p in pieces) == "pong" * 3
        assert pieces[-1].done and pieces[-1].eval_count == 3

        filled = await api.generate(model="a", prompt="def f(x):", suffix="    return y")
        assert filled.response == "pong" * 3  # through the upstream's /infill
        assert filled.done_reason == "stop" and filled.eval_count == 3

        tagged = await api.chat(model="q:8b", messages=user())  # an id with a tag of its own
        assert tagged.message.content == "q" * 10

        embedded = await api.embed(model="emb", input=["x", "y"])
        assert len(embedded.embeddings) == 2
        assert sum(v * v for v in embedded.embeddings[0]) == pytest.approx(1.0)
        assert embedded.embeddings[0] != embedded.embeddings[1]
        short = await api.embed(model="emb", input="x", dimensions=3)
        assert len(short.embeddings[0]) == 3
        assert sum(v * v for v in short.embeddings[0]) == pytest.approx(1.0)
        legacy = await api.embeddings(model="emb:latest", prompt="x")
        assert len(legacy.embedding) == 8

        running = await api.ps()
        assert [m.model for m in running.models] == ["emb:latest"]  # one model at a time
        assert running.models[0].expires_at is not None

        # every request is activity, with the upstream's usage in its tail
        chats = finished(watch.events, "/api/chat")
        assert [(e.model, e.status) for e in chats] == [("a", 200), ("a", 200), ("q:8b", 200)]
        assert usage_of(chats[0].tail).completion_tokens == 3
        assert [e.status for e in finished(watch.events, "/api/embed")] == [200, 200]


async def test_version_and_root_as_ollama_answers_them() -> None:
    async with (
        running_server(config_yaml(fake_model("a"), top="apiKeys: [sk-1]")) as server,
        server.client() as http,
    ):
        async with http.get(server.url + "/") as response:
            assert response.status == 200
            assert await response.text() == "Ollama is running"
        async with http.head(server.url + "/") as response:
            assert response.status == 200
        browser = {"Accept": "text/html,application/xhtml+xml"}
        async with http.get(server.url + "/", headers=browser, allow_redirects=False) as response:
            assert response.status == 302
            assert response.headers["Location"] == "/ui"
        async with http.get(server.url + "/api/version") as response:
            assert response.status == 401  # the API itself needs the key
        headers = {"Authorization": "Bearer sk-1"}
        async with http.get(server.url + "/api/version", headers=headers) as response:
            version = await response.json()
        assert version["version"].count(".") == 2


async def test_keep_alive_per_request_and_ps_deadlines() -> None:
    yaml = config_yaml(fake_model("a"), fake_model("b", extra="ttl: 600"), top=TOGETHER)
    async with running_server(yaml) as server, watching(server) as watch:
        api = client(server)
        now = datetime.now(UTC)
        await api.chat(model="a", messages=user(), keep_alive="1h")
        await api.chat(model="b", messages=user())  # its configured ttl
        expiry = {m.model: m.expires_at for m in (await api.ps()).models}
        assert list(expiry) == ["a:latest", "b:latest"]  # the longest time left first
        assert expiry["a:latest"] is not None and expiry["b:latest"] is not None
        assert now + timedelta(minutes=59) < expiry["a:latest"] < now + timedelta(minutes=61)
        assert now + timedelta(minutes=9) < expiry["b:latest"] < now + timedelta(minutes=11)

        await api.chat(model="b", messages=user(), keep_alive=-1)
        forever = {m.model: m.expires_at for m in (await api.ps()).models}["b:latest"]
        assert forever is not None and forever.year > 2300

        # keep_alive 0: the answer comes, then the model unloads once idle
        answer = await api.chat(model="a", messages=user(), keep_alive=0)
        assert answer.done
        await watch.until(lambda: watch.state("a") == "stopped")
        assert watch.state("b") == "ready"
        assert [m.model for m in (await api.ps()).models] == ["b:latest"]


async def test_load_and_unload_idioms() -> None:
    yaml = config_yaml(fake_model("a"), fake_model("b"), top=TOGETHER)
    async with running_server(yaml) as server, watching(server) as watch:
        api = client(server)
        loaded = await api.generate(model="a", prompt="")
        assert loaded.done and loaded.done_reason == "load" and loaded.response == ""
        assert watch.state("a") == "ready"
        chat_loaded = await api.chat(model="b:latest", messages=[])
        assert chat_loaded.done_reason == "load" and chat_loaded.message.content == ""
        assert watch.state("b") == "ready"

        unloaded = await api.generate(model="a", keep_alive=0)
        assert unloaded.done_reason == "unload"
        await watch.until(lambda: watch.state("a") == "stopped")
        chat_unloaded = await api.chat(model="b", messages=[], keep_alive="0s")
        assert chat_unloaded.done_reason == "unload"
        await watch.until(lambda: watch.state("b") == "stopped")

        # unloading a model that is not loaded loads nothing
        again = await api.generate(model="a", keep_alive=0)
        assert again.done_reason == "unload"
        assert watch.swaps_to("a") == 1


async def test_thinking_and_tool_calls_through_the_client() -> None:
    arguments = '{"city":"Tokyo","days":3}'
    yaml = config_yaml(
        fake_model("t", "--respond", "", "--chunks", "1", "--reasoning", "let me see"),
        fake_model("tools", "--chunks", "0", "--tool-arguments", arguments),
    )
    async with running_server(yaml) as server:
        api = client(server)
        thought = await api.chat(model="t", messages=user(), think=True)
        assert thought.message.thinking == "let me see"
        parts = [p async for p in await api.chat(model="t", messages=user(), stream=True)]
        assert "".join(p.message.thinking or "" for p in parts) == "let me see"
        generated = await api.generate(model="t", prompt="hi", think="high")
        assert generated.thinking == "let me see"

        called = await api.chat(model="tools", messages=user("weather?"), tools=[WEATHER])
        calls = called.message.tool_calls
        assert calls is not None and len(calls) == 1
        assert calls[0].function.name == "get_weather"
        assert calls[0].function.arguments == {"city": "Tokyo", "days": 3}
        assert called.done_reason == "stop"

        streamed = [
            p
            async for p in await api.chat(
                model="tools", messages=user("weather?"), tools=[WEATHER], stream=True
            )
        ]
        with_calls = [p for p in streamed if p.message.tool_calls]
        assert len(with_calls) == 1 and not with_calls[0].done
        assert with_calls[0].message.tool_calls is not None
        assert with_calls[0].message.tool_calls[0].function.arguments["city"] == "Tokyo"
        assert streamed[-1].done


async def test_errors_in_ollama_shape() -> None:
    yaml = config_yaml(
        fake_model("a"),
        fake_model("slow", "--chunks", "100", "--chunk-gap", "0.05", extra="concurrencyLimit: 1"),
        fake_model("broken", "--exit-after", "0"),
        fake_model("dies", "--crash-mid-stream"),
        top="groups: {all: {swap: false, members: [a, slow, broken, dies]}}",
    )
    async with running_server(yaml) as server, server.client() as http:
        api = client(server)
        with pytest.raises(ollama.ResponseError) as missing:
            await api.chat(model="nope", messages=user())
        assert missing.value.status_code == 404
        assert missing.value.error == 'model "nope" not found, try pulling it first'

        with pytest.raises(ollama.ResponseError) as bad:
            await api.chat(model="a", messages=user(), keep_alive="300")
        assert bad.value.status_code == 400
        assert bad.value.error == 'time: missing unit in duration "300"'

        with pytest.raises(ollama.ResponseError) as broken:
            await api.generate(model="broken", prompt="hi")
        assert broken.value.status_code == 500
        assert "prematurely" in broken.value.error

        with pytest.raises(ollama.ResponseError) as pulled:
            await api.pull("a")
        assert pulled.value.status_code == 501
        assert "does not support /api/pull" in pulled.value.error

        # an upstream that dies after the answer started: the error is the last line
        with pytest.raises(ollama.ResponseError) as died:
            async for _ in await api.chat(model="dies", messages=user(), stream=True):
                pass
        assert "upstream connection lost" in died.value.error

        # over the concurrency limit: 429 with Retry-After, in Ollama's shape
        stream = await api.chat(model="slow", messages=user(), stream=True)
        first = await anext(stream)
        assert not first.done
        async with http.post(
            server.url + "/api/chat", json={"model": "slow", "messages": user()}
        ) as response:
            assert response.status == 429
            assert response.headers["Retry-After"] == "1"
            assert "Too many requests" in (await response.json())["error"]
        await cast(AsyncGenerator[Any, None], stream).aclose()  # the client leaves

        for body, message in (
            (b"", "missing request body"),
            (b"[]", "must be a JSON object"),
            (b'{"messages": []}', "model is required"),
            (b'{"model": "a", "prompt": "x", "format": "yaml"}', "invalid format"),
        ):
            async with http.post(server.url + "/api/generate", data=body) as response:
                assert response.status == 400
                assert message in (await response.json())["error"]


@dataclass
class Recorded:
    url: str = ""
    bodies: list[dict[str, Any]] = field(default_factory=list)


@asynccontextmanager
async def recording_sse_upstream() -> AsyncIterator[Recorded]:
    """An OpenAI upstream that records each JSON body and streams one short answer."""
    recorded = Recorded()

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.path == "/health":
            return web.json_response({"status": "ok"})
        recorded.bodies.append(await request.json())
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for chunk in (
            {"choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": None}]},
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]},
            {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 1}},
        ):
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    recorded.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield recorded
    finally:
        await runner.cleanup()


async def test_what_the_upstream_receives() -> None:
    async with recording_sse_upstream() as recorded:
        extra = "useModelName: real-name\nfilters: {setParams: {x: 1}}"
        model = recorded_model("r", recorded.url, extra=extra)  # a live process, our proxy
        async with running_server(config_yaml(model)) as server:
            api = client(server)
            answer = await api.chat(
                model="r:latest",
                messages=[
                    {"role": "system", "content": "sys"},
                    {"role": "user", "content": "what is this?", "images": [PNG]},
                    {
                        "role": "assistant",
                        "content": "",
                        "tool_calls": [
                            {"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
                        ],
                    },
                    {"role": "tool", "content": "cold", "tool_name": "get_weather"},
                ],
                tools=[WEATHER],
                format={"type": "object", "properties": {"a": {"type": "string"}}},
                options={"temperature": 0.1, "num_predict": 5, "top_k": 3, "num_ctx": 4096},
                think=False,
                keep_alive="10m",
            )
            assert answer.message.content == "ok"
            assert answer.done_reason == "length"
            assert answer.prompt_eval_count == 7 and answer.eval_count == 1
            raw = await api.generate(model="r", prompt="[INST]x[/INST]", raw=True)
            assert raw.response == "ok"
    chat_body, raw_body = recorded.bodies
    assert chat_body["model"] == "real-name"  # useModelName applies
    assert chat_body["x"] == 1  # and the model's filters
    assert chat_body["stream"] is True
    assert chat_body["stream_options"] == {"include_usage": True}
    assert "keep_alive" not in chat_body and "options" not in chat_body
    assert (chat_body["temperature"], chat_body["max_tokens"], chat_body["top_k"]) == (0.1, 5, 3)
    assert "num_ctx" not in chat_body
    assert chat_body["chat_template_kwargs"] == {"enable_thinking": False}
    assert chat_body["response_format"]["type"] == "json_schema"
    assert chat_body["tools"] == [WEATHER]
    messages = chat_body["messages"]
    assert messages[1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": f"data:image/png;base64,{PNG}"},
    }
    call = messages[2]["tool_calls"][0]
    assert json.loads(call["function"]["arguments"]) == {"city": "Oslo"}
    assert messages[3]["tool_call_id"] == call["id"]
    assert raw_body["prompt"] == "[INST]x[/INST]" and "messages" not in raw_body


async def test_peers_unloads_and_clients_that_leave() -> None:
    async with running_server(config_yaml(fake_model("x", "--respond", "far"))) as peer:
        yaml = config_yaml(
            fake_model("slow", "--chunks", "200", "--chunk-gap", "0.05"),
            top=f"peers: {{p: {{proxy: {peer.url}, models: [x]}}}}",
        )
        async with running_server(yaml) as server, watching(server) as watch:
            api = client(server)
            assert [m.model for m in (await api.list()).models] == ["slow:latest", "p/x:latest"]
            remote = await api.chat(model="p/x", messages=user())
            assert remote.message.content == "far" * 10
            assert remote.eval_count == 10
            assert [e.model for e in finished(watch.events, "/api/chat")] == ["p/x"]

            # an unload cuts a stream in flight: its last line says why
            stream = await api.chat(model="slow", messages=user(), stream=True)
            assert not (await anext(stream)).done
            with pytest.raises(ollama.ResponseError) as cut:
                await server.service.router.unload(["slow"])
                async for _ in stream:
                    pass
            assert "cut short" in cut.value.error

            # a client that leaves mid-stream frees the model at once
            stream = await api.chat(model="slow", messages=user(), stream=True)
            assert not (await anext(stream)).done
            assert server.service.router.snapshot.in_flight == {"slow": 1}
            await cast(AsyncGenerator[Any, None], stream).aclose()
            await watch.until(watch.idle)
            assert finished(watch.events, "/api/chat")[-1].status == 499
