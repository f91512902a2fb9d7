"""Ollama requests as OpenAI requests: options, format, think, images, tools and tool
results, generate (templated and raw), embeddings, and the refusals."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from llamaswap.http.ollama.options import LOAD_TIME, sampling_parameters
from llamaswap.http.ollama.to_openai import (
    CHAT_PATH,
    COMPLETIONS_PATH,
    EMBEDDINGS_PATH,
    INFILL_PATH,
    BadOllamaRequest,
    chat_call,
    chat_messages,
    embed_call,
    embed_inputs,
    generate_call,
    image_url,
    response_format,
    thinking_parameters,
)

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 40).decode()
JPEG = base64.b64encode(b"\xff\xd8\xff\xe0" + b"\0" * 40).decode()
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather in a given city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def test_every_sampling_option_has_its_upstream_name() -> None:
    options = {
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 20,
        "min_p": 0.05,
        "typical_p": 0.7,
        "seed": 42,
        "num_predict": 100,
        "stop": ["\n", "user:"],
        "repeat_penalty": 1.2,
        "repeat_last_n": 33,
        "presence_penalty": 1.5,
        "frequency_penalty": 1.0,
        "num_keep": 5,
        "mirostat": 1,
        "mirostat_tau": 5.0,
        "mirostat_eta": 0.1,
    }
    assert sampling_parameters(options) == {
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 20,
        "min_p": 0.05,
        "typical_p": 0.7,
        "seed": 42,
        "max_tokens": 100,
        "stop": ["\n", "user:"],
        "repeat_penalty": 1.2,
        "repeat_last_n": 33,
        "presence_penalty": 1.5,
        "frequency_penalty": 1.0,
        "n_keep": 5,
        "mirostat": 1,
        "mirostat_tau": 5.0,
        "mirostat_eta": 0.1,
    }


def test_load_time_and_unknown_options_are_dropped() -> None:
    options = dict.fromkeys(LOAD_TIME, 8) | {"num_ctx": 4096, "tfs_z": 1.0, "nonsense": 1}
    assert sampling_parameters(options) == {}
    assert "num_ctx" in LOAD_TIME
    assert sampling_parameters(None) == {}
    assert sampling_parameters("temperature") == {}


@pytest.mark.parametrize("limit", [-1, -2, 0, None, True])
def test_num_predict_without_a_limit_leaves_the_default(limit: Any) -> None:
    assert sampling_parameters({"num_predict": limit}) == {}


def test_a_single_stop_string_becomes_a_list() -> None:
    assert sampling_parameters({"stop": "END"}) == {"stop": ["END"]}


def test_format() -> None:
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}}
    assert response_format("json") == {"type": "json_object"}
    assert response_format(schema) == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": schema, "strict": True},
    }
    assert response_format(None) is None
    assert response_format("") is None
    with pytest.raises(BadOllamaRequest, match='invalid format: "yaml"; expected "json"'):
        response_format("yaml")


@pytest.mark.parametrize(
    ("think", "parameters"),
    [
        (None, {}),
        (True, {"chat_template_kwargs": {"enable_thinking": True}}),
        (False, {"chat_template_kwargs": {"enable_thinking": False}}),
        ("low", {"chat_template_kwargs": {"enable_thinking": True}, "reasoning_effort": "low"}),
        ("high", {"chat_template_kwargs": {"enable_thinking": True}, "reasoning_effort": "high"}),
        ("max", {"chat_template_kwargs": {"enable_thinking": True}, "reasoning_effort": "high"}),
    ],
)
def test_think(think: Any, parameters: dict[str, Any]) -> None:
    assert thinking_parameters(think) == parameters


@pytest.mark.parametrize(("think", "message"), [("extreme", "invalid think value"), (1, "think")])
def test_think_refusals(think: Any, message: str) -> None:
    with pytest.raises(BadOllamaRequest, match=message):
        thinking_parameters(think)


def test_images_become_data_urls_with_their_type() -> None:
    assert image_url(PNG)["image_url"]["url"] == f"data:image/png;base64,{PNG}"
    assert image_url(JPEG)["image_url"]["url"] == f"data:image/jpeg;base64,{JPEG}"
    with pytest.raises(BadOllamaRequest):
        image_url(42)


def test_chat_call_carries_everything_translated() -> None:
    document = {
        "model": "m:latest",
        "messages": [
            {"role": "System", "content": "be brief"},
            {"role": "user", "content": "what is this?", "images": [PNG]},
        ],
        "options": {"temperature": 0, "num_predict": 8, "num_ctx": 2048},
        "format": "json",
        "think": "medium",
        "tools": [WEATHER],
        "keep_alive": "5m",
        "stream": False,
    }
    call = chat_call(document, "m")
    assert call.path == CHAT_PATH
    assert call.body == {
        "model": "m",
        "messages": [
            {"role": "system", "content": "be brief"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                ],
            },
        ],
        "tools": [WEATHER],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0,
        "max_tokens": 8,
        "response_format": {"type": "json_object"},
        "chat_template_kwargs": {"enable_thinking": True},
        "reasoning_effort": "medium",
    }


def test_tool_calls_and_results_round_trip_with_ids() -> None:
    messages = [
        {"role": "user", "content": "weather in Toronto and Paris?"},
        {
            "role": "assistant",
            "content": "",
            "thinking": "two cities",
            "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Toronto"}}},
                {"id": "given", "function": {"name": "get_weather", "arguments": {"city": "P"}}},
                {"function": {"name": "get_time", "arguments": {}}},
            ],
        },
        {"role": "tool", "content": "12:00", "tool_name": "get_time"},
        {"role": "tool", "content": "11 degrees", "tool_name": "get_weather"},
        {"role": "tool", "content": "14 degrees", "tool_call_id": "given"},
    ]
    out = chat_messages(messages)
    assistant = out[1]
    assert assistant["reasoning_content"] == "two cities"
    calls = assistant["tool_calls"]
    assert [c["id"] for c in calls] == ["call_1_0", "given", "call_1_2"]
    assert calls[0] == {
        "id": "call_1_0",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Toronto"}'},
    }
    assert json.loads(calls[2]["function"]["arguments"]) == {}
    assert out[2] == {
        "role": "tool",
        "content": "12:00",
        "tool_call_id": "call_1_2",
        "name": "get_time",
    }
    assert out[3]["tool_call_id"] == "call_1_0"  # the earliest open call of that tool
    assert out[4]["tool_call_id"] == "given"


@pytest.mark.parametrize(
    "messages",
    [
        "hi",
        ["hi"],
        [{"role": "user", "content": 3}],
        [{"role": "assistant", "content": "", "tool_calls": [{"function": {}}]}],
        [{"role": "user", "content": "x", "images": "abc"}],
    ],
)
def test_malformed_messages_are_400(messages: Any) -> None:
    with pytest.raises(BadOllamaRequest):
        chat_messages(messages)


def test_generate_is_a_chat_turn_with_system_and_images() -> None:
    call = generate_call(
        {"prompt": "why?", "system": "sys", "images": [JPEG], "options": {"seed": 1}}, "m"
    )
    assert call.path == CHAT_PATH
    assert call.body["messages"] == [
        {"role": "system", "content": "sys"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "why?"},
                {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{JPEG}"}},
            ],
        },
    ]
    assert call.body["seed"] == 1


def test_raw_generate_is_a_text_completion() -> None:
    call = generate_call({"prompt": "[INST] hi [/INST]", "raw": True, "format": "json"}, "m")
    assert call.path == COMPLETIONS_PATH
    assert call.body["prompt"] == "[INST] hi [/INST]"
    assert call.body["response_format"] == {"type": "json_object"}
    assert "messages" not in call.body


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"prompt": "x", "raw": True, "system": "s"}, "raw mode does not support"),
        ({"prompt": "x", "raw": True, "images": [PNG]}, "raw mode does not support images"),
        ({"prompt": "x", "suffix": "y", "images": [PNG]}, "suffix does not support images"),
        ({"prompt": 3}, "must be strings"),
    ],
)
def test_generate_refusals(document: dict[str, Any], message: str) -> None:
    with pytest.raises(BadOllamaRequest, match=message):
        generate_call(document, "m")


def test_suffix_is_llama_cpp_infill() -> None:
    document = {
        "prompt": "def gcd(a, b):",
        "suffix": "    return result",
        "system": "ignored, as Ollama ignores it with a suffix",
        "options": {"temperature": 0, "num_predict": 32, "top_k": 5},
        "format": "json",
    }
    call = generate_call(document, "coder")
    assert call.path == INFILL_PATH
    assert call.body == {
        "model": "coder",
        "input_prefix": "def gcd(a, b):",
        "input_suffix": "    return result",
        "prompt": "",
        "stream": True,
        "temperature": 0,
        "max_tokens": 32,
        "top_k": 5,
    }


def test_embeddings() -> None:
    assert embed_inputs("a") == ["a"]
    assert embed_inputs(["a", "b"]) == ["a", "b"]
    assert embed_inputs("") == embed_inputs(None) == embed_inputs([]) == []
    with pytest.raises(BadOllamaRequest, match="invalid input type"):
        embed_inputs([1, 2])
    call = embed_call(["a"], "e")
    assert call.path == EMBEDDINGS_PATH
    assert call.body == {"model": "e", "input": ["a"], "encoding_format": "float"}
