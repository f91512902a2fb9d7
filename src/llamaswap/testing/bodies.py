"""Response bodies in the shapes real servers send: OpenAI, Anthropic and llama.cpp.

Clients parse these: the `openai` and `anthropic` SDKs, and llamaswap's own metrics code, which
reads `usage` and llama.cpp's `timings` from JSON bodies and from SSE streams. So field names
and stream framing follow the real servers (see real-llama-server.md) rather than being merely
plausible, and simple-responder's debug fields are added where llama-swap's tests read them.
Nothing here touches aiohttp, so each shape can be read on its own.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import secrets
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

PROMPT_TOKENS = 25  # what simple-responder always reported; llama-swap's tests expect it
EMBEDDING_DIM = 8
# A valid 1x1 transparent PNG, for image endpoints.
PNG_1X1 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    500: "server_error",
    501: "not_supported_error",
    503: "unavailable_error",
}
_WORD = re.compile(r"\w+")
JSON = dict[str, Any]


def dumps(value: Any) -> str:
    """Compact JSON with raw UTF-8, as llama-server writes it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event; `data` is JSON-encoded unless it is already a string."""
    text = data if isinstance(data, str) else dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {text}\n\n".encode()


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def error(status: int, message: str, kind: str | None = None) -> JSON:
    """llama-server's error body (`code`, `message`, `type`) plus OpenAI's `param`."""
    kind = kind or _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request")
    return {"error": {"code": status, "message": message, "type": kind, "param": None}}


def loading() -> JSON:
    """What llama-server answers on every path while its model is still loading."""
    return error(503, "Loading model", "unavailable_error")


def approx_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: about four characters per token."""
    return (len(text) + 3) // 4


def texts_in(value: Any) -> list[str]:
    """Every string under `value`, in order: message contents, content blocks, prompts."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in texts_in(v)]
    if isinstance(value, list):
        return [t for v in value for t in texts_in(v)]
    return []


@dataclass(frozen=True)
class Timings:
    """llama.cpp's per-request `timings`; measured on the fake's own clock, never made up."""

    prompt_n: int
    prompt_ms: float
    predicted_n: int
    predicted_ms: float

    def as_json(self) -> JSON:
        prompt_ms = max(self.prompt_ms, 0.001)  # a real server never reports zero time
        predicted_ms = max(self.predicted_ms, 0.001)
        return {
            "cache_n": 0,
            "prompt_n": self.prompt_n,
            "prompt_ms": round(prompt_ms, 3),
            "prompt_per_token_ms": round(prompt_ms / max(self.prompt_n, 1), 3),
            "prompt_per_second": round(self.prompt_n * 1000 / prompt_ms, 3),
            "predicted_n": self.predicted_n,
            "predicted_ms": round(predicted_ms, 3),
            "predicted_per_token_ms": round(predicted_ms / max(self.predicted_n, 1), 3),
            "predicted_per_second": round(self.predicted_n * 1000 / predicted_ms, 3),
        }


@dataclass(frozen=True)
class ToolCall:
    """A call the model makes (`--tool-arguments`): OpenAI's arguments are a JSON string."""

    id: str
    name: str
    arguments: str

    def as_json(self) -> JSON:
        function = {"name": self.name, "arguments": self.arguments}
        return {"id": self.id, "type": "function", "function": function}


@dataclass(frozen=True)
class Reply:
    """One generated answer: `chunks` pieces of `text` when streamed, `text` once otherwise;
    `reasoning` first (llama.cpp's `reasoning_content`) and `tool_call` last, when set."""

    model: str
    text: str
    chunks: int
    prompt_tokens: int = PROMPT_TOKENS
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))
    reasoning: str = ""
    tool_call: ToolCall | None = None

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool_call else "stop"

    def usage(self) -> JSON:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.chunks,
            "total_tokens": self.prompt_tokens + self.chunks,
        }


@dataclass(frozen=True)
class StreamPlan:
    """A streamed answer: `head` frames, then `piece(i)` for each chunk, then `tail(timings)`.

    The server writes each frame on its own, pauses `--chunk-gap` between pieces and may crash
    after half of them; only the tail needs the timings measured along the way.
    """

    head: Sequence[bytes]
    piece: Callable[[int], bytes]
    tail: Callable[[Timings], Sequence[bytes]]
    content_type: str = "text/event-stream"


# --- OpenAI chat completions ------------------------------------------------------------------


def chat_completion(reply: Reply, timings: Timings) -> JSON:
    message: JSON = {"role": "assistant", "content": reply.text}
    if reply.reasoning:
        message["reasoning_content"] = reply.reasoning
    if reply.tool_call:
        message["tool_calls"] = [reply.tool_call.as_json()]
    return {
        "id": reply.id,
        "object": "chat.completion",
        "created": reply.created,
        "model": reply.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": reply.finish_reason,
            }
        ],
        "usage": reply.usage(),
        "timings": timings.as_json(),
    }


def chat_stream(reply: Reply, include_usage: bool) -> StreamPlan:
    def chunk(delta: JSON, finish: str | None, **extra: Any) -> JSON:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {
            "id": reply.id,
            "object": "chat.completion.chunk",
            "created": reply.created,
            "model": reply.model,
            "choices": [choice],
            **extra,
        }

    def piece(i: int) -> bytes:
        delta = {"role": "assistant", "content": reply.text} if i == 0 else {"content": reply.text}
        return sse(chunk(delta, None))

    def tool_call_frames() -> list[JSON]:
        """The call in fragments, as llama-server streams it: id and name first, then
        the arguments in two pieces."""
        call = reply.tool_call
        if call is None:
            return []
        half = len(call.arguments) // 2
        opening = {"index": 0, **call.as_json()}
        opening["function"] = {"name": call.name, "arguments": ""}
        return [
            chunk({"tool_calls": [opening]}, None),
            *(
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}, None)
                for part in (call.arguments[:half], call.arguments[half:])
            ),
        ]

    def tail(timings: Timings) -> list[JSON]:
        frames = [*tool_call_frames(), chunk({}, reply.finish_reason)]
        if include_usage:  # OpenAI: the usage chunk has an empty `choices`
            frames.append({**chunk({}, None), "choices": [], "usage": reply.usage()})
        frames[-1]["timings"] = timings.as_json()  # llama-server puts timings on the last chunk
        return frames

    head = (
        [sse(chunk({"role": "assistant", "reasoning_content": reply.reasoning}, None))]
        if reply.reasoning
        else []
    )
    return StreamPlan(head, piece, lambda t: [*map(sse, tail(t)), sse("[DONE]")])


# --- OpenAI text completions and llama.cpp's native /completion, /infill ------------------------


def text_completion(reply: Reply, timings: Timings) -> JSON:
    return {
        "id": reply.id,
        "object": "text_completion",
        "created": reply.created,
        "model": reply.model,
        "choices": [{"index": 0, "text": reply.text, "logprobs": None, "finish_reason": "stop"}],
        "usage": reply.usage(),
        "timings": timings.as_json(),
    }


def text_completion_stream(reply: Reply, include_usage: bool) -> StreamPlan:
    def chunk(text: str, finish: str | None) -> JSON:
        return {
            "id": reply.id,
            "object": "text_completion",
            "created": reply.created,
            "model": reply.model,
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
        }

    def tail(timings: Timings) -> list[bytes]:
        frames = [chunk("", "stop")]
        if include_usage:
            frames.append({**chunk("", None), "choices": [], "usage": reply.usage()})
        frames[-1]["timings"] = timings.as_json()
        return [*map(sse, frames), sse("[DONE]")]

    return StreamPlan((), lambda i: sse(chunk(reply.text, None)), tail)


def llama_completion(reply: Reply, timings: Timings, prompt: str, index: int = 0) -> JSON:
    """llama.cpp's native `/completion` (and `/infill`) result."""
    return {
        "index": index,
        "content": reply.text,
        "tokens": [],
        "id_slot": 0,
        "stop": True,
        "model": reply.model,
        "tokens_predicted": reply.chunks,
        "tokens_evaluated": reply.prompt_tokens,
        "prompt": prompt,
        "has_new_line": False,
        "truncated": False,
        "stop_type": "eos",
        "stopping_word": "",
        "tokens_cached": reply.prompt_tokens,
        "timings": timings.as_json(),
    }


def llama_completion_stream(reply: Reply, prompt: str) -> StreamPlan:
    """Native streaming: `stop: false` pieces, a final `stop: true` object, and no `[DONE]`."""

    def piece(i: int) -> bytes:
        return sse(
            {
                "index": 0,
                "content": reply.text,
                "tokens": [],
                "stop": False,
                "id_slot": -1,
                "tokens_predicted": i + 1,
                "tokens_evaluated": reply.prompt_tokens,
            }
        )

    def tail(timings: Timings) -> list[bytes]:
        final = llama_completion(reply, timings, prompt)
        return [sse({**final, "content": ""})]

    return StreamPlan((), piece, tail)


# --- embeddings, rerank -----------------------------------------------------------------------


def embedding_vector(item: Any) -> list[float]:
    """A unit-length vector that depends only on the input (same text, same vector)."""
    digest = hashlib.sha256(dumps(item).encode()).digest()
    raw = [v / 32767.5 - 1.0 for v in struct.unpack(f">{EMBEDDING_DIM}H", digest[:16])]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return [round(v / norm, 6) for v in raw]


def embedding_inputs(value: Any) -> list[Any] | None:
    """OpenAI's `input`: a string, a token list, or a list of either; None if malformed."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return [value]
        if all(isinstance(v, str | list) for v in value):
            return list(value)
    return None


def embeddings(inputs: Sequence[Any], model: str, encoding_format: str | None) -> JSON:
    data = []
    for i, item in enumerate(inputs):
        vector = embedding_vector(item)
        encoded: Any = vector
        if encoding_format == "base64":  # what the openai SDK asks for by default
            encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": encoded})
    tokens = sum(approx_tokens(x) if isinstance(x, str) else len(x) for x in inputs)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def relevance(query: str, document: str) -> float:
    """Share of the query's words that occur in the document: crude, but ordered sensibly."""
    wanted = {w.lower() for w in _WORD.findall(query)}
    if not wanted:
        return 0.0
    present = {w.lower() for w in _WORD.findall(document)}
    return round(len(wanted & present) / len(wanted), 6)


def rerank(
    query: str, documents: Sequence[str], model: str, top_n: int | None, with_text: bool
) -> JSON:
    scored = sorted(
        ((i, relevance(query, d)) for i, d in enumerate(documents)), key=lambda r: -r[1]
    )
    results: list[JSON] = []
    for index, score in scored[:top_n]:
        result: JSON = {"index": index, "relevance_score": score}
        if with_text:
            result["document"] = {"text": documents[index]}
        results.append(result)
    tokens = approx_tokens(query) + sum(approx_tokens(d) for d in documents)
    return {
        "model": model,
        "object": "list",
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        "results": results,
    }


# --- Anthropic Messages -----------------------------------------------------------------------


def anthropic_input_tokens(body: JSON) -> int:
    """The same estimate for /v1/messages usage and /v1/messages/count_tokens."""
    text = "".join(texts_in(body.get("system")) + texts_in(body.get("messages")))
    return max(approx_tokens(text), 1)


def anthropic_message(reply: Reply) -> JSON:
    return {
        "id": reply.id,
        "type": "message",
        "role": "assistant",
        "content": [{"type": "text", "text": reply.text}],
        "model": reply.model,
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": reply.prompt_tokens, "output_tokens": reply.chunks},
    }


def anthropic_stream(reply: Reply) -> StreamPlan:
    """message_start, content_block_start, deltas, content_block_stop, message_delta, stop."""
    start = {**anthropic_message(reply), "content": [], "stop_reason": None}
    start["usage"] = {"input_tokens": reply.prompt_tokens, "output_tokens": 1}
    head = [
        sse({"type": "message_start", "message": start}, "message_start"),
        sse(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            "content_block_start",
        ),
    ]
    delta = sse(
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": reply.text},
        },
        "content_block_delta",
    )
    tail = [
        sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": reply.chunks},
            },
            "message_delta",
        ),
        sse({"type": "message_stop"}, "message_stop"),
    ]
    return StreamPlan(head, lambda i: delta, lambda t: tail)


# --- OpenAI Responses -------------------------------------------------------------------------


def response_object(reply: Reply, text: str, status: str = "completed") -> JSON:
    done = status == "completed"
    message = {
        "type": "message",
        "id": "msg_" + reply.id.removeprefix("resp_"),
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}] if done else [],
    }
    return {
        "id": reply.id,
        "object": "response",
        "created_at": reply.created,
        "status": status,
        "model": reply.model,
        "output": [message] if done else [],
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "metadata": {},
        "parallel_tool_calls": True,
        "temperature": 1.0,
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "usage": {
            "input_tokens": reply.prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": reply.chunks,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": reply.prompt_tokens + reply.chunks,
        }
        if done
        else None,
    }


def response_stream(reply: Reply) -> StreamPlan:
    """The Responses API event sequence, one `event:` per frame, numbered; no `[DONE]`."""
    item_id = "msg_" + reply.id.removeprefix("resp_")
    full_text = reply.text * reply.chunks
    seq = iter(range(1 << 30))  # frames are written in order, so a shared counter numbers them

    def event(kind: str, **payload: Any) -> bytes:
        return sse({"type": kind, "sequence_number": next(seq), **payload}, kind)

    where = {"item_id": item_id, "output_index": 0, "content_index": 0}
    part = {"type": "output_text", "text": full_text, "annotations": []}
    final = response_object(reply, full_text)

    def head() -> list[bytes]:
        in_progress = response_object(reply, "", "in_progress")
        item = {**final["output"][0], "status": "in_progress", "content": []}
        return [
            event("response.created", response=in_progress),
            event("response.in_progress", response=in_progress),
            event("response.output_item.added", output_index=0, item=item),
            event("response.content_part.added", **where, part={**part, "text": ""}),
        ]

    def tail(_: Timings) -> list[bytes]:
        return [
            event("response.output_text.done", **where, text=full_text, logprobs=[]),
            event("response.content_part.done", **where, part=part),
            event("response.output_item.done", output_index=0, item=final["output"][0]),
            event("response.completed", response=final),
        ]

    def piece(_: int) -> bytes:
        return event("response.output_text.delta", **where, delta=reply.text, logprobs=[])

    return StreamPlan(head(), piece, tail)


# --- llama.cpp metadata -----------------------------------------------------------------------


def models_list(model: str, created: int) -> JSON:
    return {
        "object": "list",
        "data": [
            {
                "id": model,
                "object": "model",
                "created": created,
                "owned_by": "llamacpp",
                "meta": {
                    "vocab_type": 1,
                    "n_vocab": 866,
                    "n_ctx_train": 4096,
                    "n_embd": EMBEDDING_DIM,
                    "n_params": 193_000,
                    "size": 793_664,
                },
            }
        ],
    }


def props(model: str, chunks: int) -> JSON:
    return {
        "default_generation_settings": {
            "id": 0,
            "id_task": -1,
            "n_ctx": 4096,
            "speculative": False,
            "is_processing": False,
            "params": {"n_predict": chunks, "temperature": 0.8, "top_k": 40, "top_p": 0.95},
        },
        "total_slots": 4,
        "model_alias": model,
        "model_path": f"/models/{model}.gguf",
        "modalities": {"vision": False, "audio": False},
        "chat_template": (
            "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
            "{% endfor %}<|im_start|>assistant\n"
        ),
        "bos_token": "<s>",
        "eos_token": "</s>",
        "build_info": "b1-llamaswap-fake",
    }


def image_result(count: int, as_url: bool) -> JSON:
    item = {"url": "data:image/png;base64," + PNG_1X1} if as_url else {"b64_json": PNG_1X1}
    return {"created": int(time.time()), "data": [dict(item) for _ in range(count)]}
