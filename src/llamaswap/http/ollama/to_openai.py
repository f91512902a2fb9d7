"""Ollama requests as OpenAI requests: `/api/chat`, `/api/generate` and `/api/embed`
become `/v1/chat/completions`, `/v1/completions` (raw prompts) and `/v1/embeddings`;
a `suffix` (fill-in-the-middle) goes to llama.cpp's `/infill`.

The upstream is always asked to stream, with usage in the last chunk: one reader then
serves streaming and non-streaming Ollama clients alike, and the counts and llama.cpp
`timings` Ollama reports arrive at the end. Everything Ollama-only (`keep_alive`,
`think`, `format`, `options`, `images`, tool call shapes) is rewritten here; nothing
else is added to the request.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from .options import sampling_parameters

CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"
EMBEDDINGS_PATH = "/v1/embeddings"
INFILL_PATH = "/infill"  # llama.cpp's fill-in-the-middle (no OpenAI equivalent)
THINK_LEVELS = ("high", "medium", "low", "max")

# The first bytes of the image formats vision models take, for the data URL's type.
_IMAGE_MAGIC = (
    (b"\x89PNG", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"RIFF", "image/webp"),
    (b"BM", "image/bmp"),
)


class BadOllamaRequest(ValueError):
    """The request cannot be translated as sent (400, message in Ollama's words)."""


@dataclass(frozen=True)
class UpstreamCall:
    """What to send upstream: the OpenAI path and JSON body."""

    path: str
    body: dict[str, Any]


# --- parameters shared by chat and generate -----------------------------------------


def response_format(value: Any) -> dict[str, Any] | None:
    """Ollama's `format`: "json" is JSON mode, an object is a JSON schema."""
    if value is None or value == "":
        return None
    if value == "json":
        return {"type": "json_object"}
    if isinstance(value, dict):
        return {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": value, "strict": True},
        }
    shown = json.dumps(value)
    raise BadOllamaRequest(f'invalid format: {shown}; expected "json" or a valid JSON Schema')


def thinking_parameters(think: Any) -> dict[str, Any]:
    """Ollama's `think`: a boolean switches the chat template's thinking on or off
    (llama.cpp and vLLM read `chat_template_kwargs.enable_thinking`); a level is also
    sent as `reasoning_effort` ("max" as "high", the highest OpenAI level)."""
    if think is None:
        return {}
    if isinstance(think, bool):
        return {"chat_template_kwargs": {"enable_thinking": think}}
    if isinstance(think, str):
        if think not in THINK_LEVELS:
            raise BadOllamaRequest(
                f'invalid think value: "{think}" '
                '(must be "high", "medium", "low", "max", true, or false)'
            )
        return {
            "chat_template_kwargs": {"enable_thinking": True},
            "reasoning_effort": "high" if think == "max" else think,
        }
    raise BadOllamaRequest(
        'think must be a boolean or string ("high", "medium", "low", "max", true, or false)'
    )


def generation_parameters(document: dict[str, Any]) -> dict[str, Any]:
    """Options, format and think of a chat or generate request, plus the streaming
    request with usage that every translated generation uses."""
    out: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}}
    out.update(sampling_parameters(document.get("options")))
    fmt = response_format(document.get("format"))
    if fmt is not None:
        out["response_format"] = fmt
    out.update(thinking_parameters(document.get("think")))
    return out


# --- messages -----------------------------------------------------------------------


def image_url(data: Any) -> dict[str, Any]:
    """An Ollama image (base64, no type) as an OpenAI image_url content part."""
    if not isinstance(data, str) or not data:
        raise BadOllamaRequest("images must be base64-encoded strings")
    try:
        head = base64.b64decode(data[:32] + "=" * (-len(data[:32]) % 4), validate=False)
    except (binascii.Error, ValueError):
        raise BadOllamaRequest("images must be base64-encoded strings") from None
    media = next((kind for magic, kind in _IMAGE_MAGIC if head.startswith(magic)), "image/png")
    return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{data}"}}


def _content(text: str, images: Any) -> str | list[dict[str, Any]]:
    if not images:
        return text
    if not isinstance(images, list):
        raise BadOllamaRequest("images must be a list of base64-encoded strings")
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    return parts + [image_url(image) for image in images]


def _arguments_text(arguments: Any) -> str:
    """Ollama's arguments are an object; OpenAI's are that object as a JSON string."""
    if arguments is None:
        return "{}"
    if isinstance(arguments, str):
        return arguments
    return json.dumps(arguments, ensure_ascii=False)


class _ToolCallIds:
    """Ids for the tool calls of a conversation. Ollama's calls and results often have
    none (a result names its tool instead); OpenAI pairs a result with its call by id,
    so calls get one and each result takes the earliest open call of its tool."""

    def __init__(self) -> None:
        self._open: list[tuple[str, str]] = []  # (id, tool name), oldest first

    def call(self, call_id: Any, name: str, position: str) -> str:
        given = call_id if isinstance(call_id, str) and call_id else f"call_{position}"
        self._open.append((given, name))
        return given

    def result(self, call_id: Any, name: str) -> str | None:
        if isinstance(call_id, str) and call_id:
            self._open = [entry for entry in self._open if entry[0] != call_id]
            return call_id
        for entry in self._open:
            if not name or entry[1] == name:
                self._open.remove(entry)
                return entry[0]
        return None


def _tool_calls(calls: Any, index: int, ids: _ToolCallIds) -> list[dict[str, Any]]:
    if not isinstance(calls, list):
        raise BadOllamaRequest("tool_calls must be a list")
    out = []
    for position, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise BadOllamaRequest("each tool call needs a function with a name")
        name = function["name"]
        out.append(
            {
                "id": ids.call(call.get("id"), name, f"{index}_{position}"),
                "type": "function",
                "function": {"name": name, "arguments": _arguments_text(function.get("arguments"))},
            }
        )
    return out


def chat_messages(messages: Any) -> list[dict[str, Any]]:
    """Ollama messages as OpenAI messages: images become content parts, `thinking`
    becomes `reasoning_content`, tool calls get ids and JSON-string arguments, tool
    results get the id of their call (and `name`, which llama.cpp templates read)."""
    if not isinstance(messages, list):
        raise BadOllamaRequest("messages must be a list")
    ids = _ToolCallIds()
    out: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise BadOllamaRequest("each message must be an object")
        role = message.get("role")
        content = message.get("content") or ""
        if not isinstance(role, str) or not isinstance(content, str):
            raise BadOllamaRequest("each message needs a string role and string content")
        role = role.lower()
        converted: dict[str, Any] = {
            "role": role,
            "content": _content(content, message.get("images")),
        }
        thinking = message.get("thinking")
        if isinstance(thinking, str) and thinking:
            converted["reasoning_content"] = thinking
        if message.get("tool_calls"):
            converted["tool_calls"] = _tool_calls(message["tool_calls"], index, ids)
        if role == "tool":
            name = message.get("tool_name") or message.get("name") or ""
            call_id = ids.result(message.get("tool_call_id"), name if isinstance(name, str) else "")
            if call_id is not None:
                converted["tool_call_id"] = call_id
            if name:
                converted["name"] = name
        out.append(converted)
    return out


# --- the calls ------------------------------------------------------------------------


def chat_call(document: dict[str, Any], model: str) -> UpstreamCall:
    """`/api/chat` with at least one message."""
    body: dict[str, Any] = {"model": model, "messages": chat_messages(document.get("messages"))}
    tools = document.get("tools")
    if tools:
        if not isinstance(tools, list):
            raise BadOllamaRequest("tools must be a list")
        body["tools"] = tools
    body.update(generation_parameters(document))
    return UpstreamCall(CHAT_PATH, body)


def generate_call(document: dict[str, Any], model: str) -> UpstreamCall:
    """`/api/generate` with a prompt: a chat turn (system, then the prompt and its
    images) rendered by the upstream's template; with `raw` the prompt as it is; with a
    `suffix`, llama.cpp's `/infill` (the model's own fill-in-the-middle tokens)."""
    prompt = document.get("prompt") or ""
    system = document.get("system") or ""
    suffix = document.get("suffix") or ""
    if not all(isinstance(text, str) for text in (prompt, system, suffix)):
        raise BadOllamaRequest("prompt, suffix and system must be strings")
    if suffix:
        return infill_call(document, model, prompt, suffix)
    if document.get("raw"):
        if system or document.get("template") or document.get("context"):
            raise BadOllamaRequest("raw mode does not support template, system, or context")
        if document.get("images"):
            raise BadOllamaRequest("raw mode does not support images")
        body: dict[str, Any] = {"model": model, "prompt": prompt}
        body.update(generation_parameters(document))
        return UpstreamCall(COMPLETIONS_PATH, body)
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": _content(prompt, document.get("images"))})
    body = {"model": model, "messages": messages}
    body.update(generation_parameters(document))
    return UpstreamCall(CHAT_PATH, body)


def infill_call(document: dict[str, Any], model: str, prefix: str, suffix: str) -> UpstreamCall:
    """Fill-in-the-middle as llama-server does it: the code before and after the gap.
    Its native API takes the same sampling names (`max_tokens` is an alias there)."""
    if document.get("images"):
        raise BadOllamaRequest("suffix does not support images")
    body: dict[str, Any] = {
        "model": model,
        "input_prefix": prefix,
        "input_suffix": suffix,
        "prompt": "",
        "stream": True,
    }
    body.update(sampling_parameters(document.get("options")))
    return UpstreamCall(INFILL_PATH, body)


def embed_inputs(value: Any) -> list[str]:
    """`/api/embed`'s `input`: a string or a list of strings ([] when empty)."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise BadOllamaRequest("invalid input type")


def embed_call(inputs: list[str], model: str) -> UpstreamCall:
    """Plain float vectors; `dimensions` is applied on the way back (any upstream)."""
    return UpstreamCall(
        EMBEDDINGS_PATH, {"model": model, "input": inputs, "encoding_format": "float"}
    )
