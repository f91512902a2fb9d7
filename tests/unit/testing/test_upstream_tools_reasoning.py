"""The fake upstream's reasoning and tool calls (`--reasoning`, `--tool-arguments`), shaped
as llama-server sends them: `reasoning_content` before the content, a tool call streamed in
fragments (id and name, then the arguments in pieces) and `finish_reason: tool_calls`.
Without the options nothing changes; a request without tools gets no call."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from llamaswap.testing.options import parse_args

from .test_upstream import Fake, Spawner, sse_data

pytestmark = pytest.mark.anyio

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
ARGUMENTS = '{"city":"Tokyo","days":3}'


@pytest.fixture(scope="module")
def thinker() -> Iterator[Fake]:
    spawner = Spawner()
    try:
        options = ("--respond", "hey", "--chunks", "2", "--reasoning", "hmm")
        yield spawner(*options, "--tool-arguments", ARGUMENTS)
    finally:
        spawner.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def chat(**extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "x"}], **extra}


def test_tool_arguments_must_be_a_json_object() -> None:
    assert parse_args(["--port", "1", "--tool-arguments", "{}"]).tool_arguments == "{}"
    assert parse_args(["--port", "1"]).tool_arguments is None
    assert parse_args(["--port", "1"]).reasoning == ""
    for bad in ("[]", "nope"):
        with pytest.raises(SystemExit):
            parse_args(["--port", "1", "--tool-arguments", bad])


async def test_plain_answer_carries_reasoning_and_the_call(thinker: Fake) -> None:
    async with aiohttp.ClientSession(thinker.url) as http:
        async with http.post("/v1/chat/completions", json=chat(tools=TOOLS)) as r:
            body = await r.json()
        async with http.post("/v1/chat/completions", json=chat()) as r:
            no_tools = await r.json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["reasoning_content"] == "hmm"
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"] == {"name": "get_weather", "arguments": ARGUMENTS}
    assert no_tools["choices"][0]["finish_reason"] == "stop"
    assert "tool_calls" not in no_tools["choices"][0]["message"]


async def test_stream_thinks_first_and_calls_in_fragments(thinker: Fake) -> None:
    body = chat(tools=TOOLS, stream=True, stream_options={"include_usage": True})
    async with (
        aiohttp.ClientSession(thinker.url) as http,
        http.post("/v1/chat/completions", json=body) as r,
    ):
        frames = sse_data(await r.read())
    assert frames[-1] == "[DONE]"
    deltas = [f["choices"][0]["delta"] for f in frames[:-1] if f["choices"]]
    assert deltas[0] == {"role": "assistant", "reasoning_content": "hmm"}
    assert [d.get("content") for d in deltas[1:3]] == ["hey", "hey"]
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert calls[0]["id"].startswith("call_") and calls[0]["function"]["name"] == "get_weather"
    assert "".join(c["function"]["arguments"] for c in calls) == ARGUMENTS
    assert json.loads(ARGUMENTS) == {"city": "Tokyo", "days": 3}
    finishes = [f["choices"][0]["finish_reason"] for f in frames[:-1] if f["choices"]]
    assert finishes[-1] == "tool_calls"
    assert frames[-2]["usage"]["completion_tokens"] == 2
