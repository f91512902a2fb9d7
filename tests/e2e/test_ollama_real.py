"""The Ollama API through llamaswap in front of a real llama.cpp `llama-server`
(`make e2e`): the official `ollama` client's chat (plain and streaming) and generate,
whose counts and durations must be the ones llama-server measured (its `timings`, read
from the raw answer that llamaswap publishes with each request), /api/ps and /api/tags
describing the real GGUF file and `-c`, and `keep_alive: 0` stopping the llama-server.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import ollama
import pytest

from llamaswap.runtime.events import RequestFinished
from tests.integration.http_helpers import watching
from tests.integration.server import running_server

from .conftest import TinyModels, llama_model, llamaswap_yaml, our_servers, wait_gone

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_leftovers")]

OPTIONS = {"num_predict": 8, "temperature": 0, "seed": 7}


def file_size(path: Path) -> int:
    return os.path.getsize(path)


def timings_of(event: RequestFinished) -> dict[str, Any]:
    """llama-server's `timings` from the raw end of its answer."""
    for line in reversed(event.tail.decode("utf-8", "replace").splitlines()):
        payload = line.removeprefix("data:").strip()
        if payload.startswith("{") and '"timings"' in payload:
            timings: dict[str, Any] = json.loads(payload)["timings"]
            return timings
    raise AssertionError(f"no timings in {event.tail[-400:]!r}")


def assert_metrics_are_llama_servers(answer: Any, event: RequestFinished) -> None:
    timings = timings_of(event)
    assert 0 < answer.eval_count <= OPTIONS["num_predict"]
    assert answer.eval_count == timings["predicted_n"]
    assert answer.prompt_eval_count == timings["prompt_n"] + timings["cache_n"]
    assert answer.prompt_eval_count > 0
    assert answer.eval_duration == round(timings["predicted_ms"] * 1e6)
    assert answer.prompt_eval_duration == round(timings["prompt_ms"] * 1e6)
    assert answer.total_duration >= answer.eval_duration


async def test_ollama_client_against_llama_server(binary: Path, tiny_models: TinyModels) -> None:
    model = llama_model(tiny_models, "m1")
    yaml_text = llamaswap_yaml(binary, [model])
    async with running_server(yaml_text) as server, watching(server) as watch:
        api = ollama.AsyncClient(host=server.url, trust_env=False, timeout=60)

        def last_request() -> RequestFinished:
            done = [e for e in watch.events if isinstance(e, RequestFinished)]
            assert done and done[-1].status == 200, done
            return done[-1]

        messages = [{"role": "user", "content": "Say something."}]
        answer = await api.chat(model="m1:latest", messages=messages, options=OPTIONS)
        assert answer.done and answer.done_reason in ("stop", "length")
        assert answer.message.content
        assert answer.load_duration and answer.load_duration > 0  # it started llama-server
        assert_metrics_are_llama_servers(answer, last_request())

        parts = [
            p
            async for p in await api.chat(
                model="m1", messages=messages, options=OPTIONS, stream=True
            )
        ]
        assert "".join(p.message.content or "" for p in parts)
        assert [p.done for p in parts].count(True) == 1 and parts[-1].done
        assert_metrics_are_llama_servers(parts[-1], last_request())

        generated = await api.generate(model="m1", prompt="Once upon a time", options=OPTIONS)
        assert generated.response and generated.done
        assert_metrics_are_llama_servers(generated, last_request())
        pieces = [
            p
            async for p in await api.generate(
                model="m1", prompt="Hello", options=OPTIONS, stream=True
            )
        ]
        assert pieces[-1].done
        assert_metrics_are_llama_servers(pieces[-1], last_request())

        (running,) = (await api.ps()).models
        assert running.model == "m1:latest"
        assert running.context_length == model.ctx  # the -c of its command
        assert running.size == file_size(model.path)
        (listed,) = (await api.list()).models
        assert listed.details is not None and listed.details.format == "gguf"

        servers = our_servers(tiny_models.directory)
        assert list(servers.values()) == ["m1"]
        last = await api.chat(model="m1", messages=messages, options=OPTIONS, keep_alive=0)
        assert last.done
        await watch.until(lambda: watch.state("m1") == "stopped", within=30)
        await wait_gone(servers, 10)
        assert our_servers(tiny_models.directory) == {}


async def test_translated_parameters_and_refusals(binary: Path, tiny_models: TinyModels) -> None:
    """Everything the translation adds is accepted by llama-server (`--jinja`: tools and
    thinking go through its templates), and its refusals reach the client unchanged."""
    yaml_text = llamaswap_yaml(binary, [llama_model(tiny_models, "m2", "--jinja")])
    tool = {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "look something up",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
    every_option = {
        **OPTIONS,
        "top_k": 3,
        "top_p": 0.9,
        "min_p": 0.1,
        "typical_p": 0.9,
        "repeat_penalty": 1.1,
        "repeat_last_n": 16,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.1,
        "num_keep": 2,
        "mirostat": 0,
        "stop": ["zzz"],
        "num_ctx": 4096,  # load-time: dropped
    }
    history: list[dict[str, Any]] = [
        {"role": "user", "content": "look up llamas"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "lookup", "arguments": {"q": "llamas"}}}],
        },
        {"role": "tool", "content": "they hum", "tool_name": "lookup"},
    ]
    async with running_server(yaml_text) as server:
        api = ollama.AsyncClient(host=server.url, trust_env=False, timeout=60)
        for think in (True, False, "high"):
            answer = await api.chat(
                model="m2", messages=history, tools=[tool], think=think, options=every_option
            )
            assert answer.done and 0 < (answer.eval_count or 0) <= OPTIONS["num_predict"]
        raw = await api.generate(model="m2", prompt="Once upon", raw=True, options=OPTIONS)
        assert raw.response and 0 < (raw.eval_count or 0) <= OPTIONS["num_predict"]

        with pytest.raises(ollama.ResponseError) as infill:
            await api.generate(model="m2", prompt="def f(", suffix="return x", options=OPTIONS)
        assert infill.value.status_code == 501
        assert "Infill is not supported by this model" in infill.value.error
        with pytest.raises(ollama.ResponseError) as embed:
            await api.embed(model="m2", input="x")
        assert embed.value.status_code == 501
        assert "--embeddings" in embed.value.error
