"""OpenAI answers as Ollama answers: streamed chunks in, Ollama frames out.

`Reply` is sans-IO: the handler feeds it each upstream chunk (chat or text completion)
and writes what it returns, one NDJSON line per frame, or asks only for the final
object when the client did not stream. Text and reasoning (llama.cpp's
`reasoning_content`, vLLM's `reasoning`) become `content`/`response` and `thinking`;
tool call fragments are joined and their JSON-string arguments become objects;
`finish_reason` becomes `done_reason`; llama.cpp's native chunks (`/infill`) are read
too. The metrics follow Ollama's llama-server runner: with llama.cpp `timings`,
`prompt_eval_count` is `cache_n + prompt_n`, `eval_count` is `predicted_n` and the
durations are its milliseconds in nanoseconds; without them the counts come from
`usage` and the durations are measured here.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

Kind = Literal["chat", "generate"]
NS = 1_000_000_000


class UpstreamFailed(Exception):
    """The upstream reported an error inside its stream."""


def created_at(wall: float | None = None) -> str:
    """RFC 3339 in UTC with microseconds, as Ollama writes `created_at`."""
    moment = datetime.fromtimestamp(time.time() if wall is None else wall, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def nanoseconds(seconds: float) -> int:
    return max(0, round(seconds * NS))


def done_reason(finish_reason: Any) -> str:
    """OpenAI's finish_reason as Ollama's done_reason ("length" or "stop")."""
    return "length" if finish_reason == "length" else "stop"


def error_message(document: Any) -> str:
    """The message of an OpenAI or llama.cpp error body (or the body itself)."""
    if isinstance(document, dict):
        error = document.get("error", document)
        if isinstance(error, dict):
            message = error.get("message")
            if isinstance(message, str) and message:
                return message
        elif isinstance(error, str) and error:
            return error
        detail = document.get("detail") or document.get("message")  # vLLM, FastAPI
        if isinstance(detail, str) and detail:
            return detail
    return json.dumps(document, ensure_ascii=False)


def arguments_object(text: str) -> dict[str, Any]:
    """OpenAI's JSON-string arguments as the object Ollama sends. Text that is not a
    JSON object (a model's malformed call) is kept whole under `arguments`."""
    if not text.strip():
        return {}
    try:
        parsed = json.loads(text)
    except ValueError:
        return {"arguments": text}
    return parsed if isinstance(parsed, dict) else {"arguments": parsed}


class _ToolCall:
    def __init__(self) -> None:
        self.id = ""
        self.name = ""
        self.arguments = ""

    def add(self, fragment: dict[str, Any]) -> None:
        if isinstance(fragment.get("id"), str):
            self.id = self.id or fragment["id"]
        function = fragment.get("function")
        if isinstance(function, dict):
            if isinstance(function.get("name"), str):
                self.name += function["name"]
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                self.arguments += arguments
            elif isinstance(arguments, dict):  # a server that already sends objects
                self.arguments += json.dumps(arguments, ensure_ascii=False)

    def as_ollama(self, index: int) -> dict[str, Any]:
        call: dict[str, Any] = {
            "function": {
                "index": index,
                "name": self.name,
                "arguments": arguments_object(self.arguments),
            }
        }
        if self.id:
            call = {"id": self.id, **call}
        return call


class Reply:
    """One answer being translated. `granted` is when the model was ready (the end of
    what Ollama calls loading) and `sent` when the request went upstream."""

    def __init__(
        self,
        kind: Kind,
        model: str,
        started: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kind = kind
        self.model = model
        self.started = started
        self.granted = started
        self.sent = started
        self._clock = clock
        self._content: list[str] = []
        self._thinking: list[str] = []
        self._calls: dict[int, _ToolCall] = {}
        self._calls_sent = 0
        self._finish: Any = None
        self._usage: dict[str, Any] = {}
        self._timings: dict[str, Any] = {}
        self._first: float | None = None
        self._last: float | None = None

    # -- input ---------------------------------------------------------------------------

    def feed(self, chunk: Any) -> list[dict[str, Any]]:
        """One upstream chunk; returns the frames to stream now (maybe none)."""
        if not isinstance(chunk, dict):
            return []
        if "error" in chunk and not chunk.get("choices"):
            raise UpstreamFailed(error_message(chunk))
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        if isinstance(chunk.get("timings"), dict):
            self._timings = chunk["timings"]
        if "choices" not in chunk and isinstance(chunk.get("content"), str):
            return self._native(chunk)
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return []
        choice = choices[0]
        delta = choice.get("delta") or choice.get("message") or {}
        if not isinstance(delta, dict):
            delta = {}
        content = delta.get("content") if "text" not in choice else choice["text"]
        thinking = delta.get("reasoning_content") or delta.get("reasoning")
        text = content if isinstance(content, str) else ""
        thought = thinking if isinstance(thinking, str) else ""
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            self._add_calls(calls)
        if text or thought or calls:
            now = self._clock()
            self._first = self._first if self._first is not None else now
            self._last = now
        if text:
            self._content.append(text)
        if thought:
            self._thinking.append(thought)
        frames = [self._frame(text, thought)] if text or thought else []
        if choice.get("finish_reason") is not None:
            self._finish = choice["finish_reason"]
            frames += self._call_frames()
        return frames

    def _native(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        """llama.cpp's own format (`/infill`): `content` pieces, then `stop: true` with
        `stop_type` ("limit" when the token budget ran out)."""
        text = chunk["content"]
        if text:
            now = self._clock()
            self._first = self._first if self._first is not None else now
            self._last = now
            self._content.append(text)
        if chunk.get("stop") is True:
            self._finish = "length" if chunk.get("stop_type") == "limit" else "stop"
        return [self._frame(text, "")] if text else []

    def _add_calls(self, fragments: list[Any]) -> None:
        for position, fragment in enumerate(fragments):
            if not isinstance(fragment, dict):
                continue
            index = fragment.get("index")
            key = index if isinstance(index, int) else len(self._calls) + position
            self._calls.setdefault(key, _ToolCall()).add(fragment)

    # -- output --------------------------------------------------------------------------

    def _frame(self, text: str, thought: str) -> dict[str, Any]:
        frame: dict[str, Any] = {"model": self.model, "created_at": created_at()}
        if self.kind == "chat":
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if thought:
                message["thinking"] = thought
            frame["message"] = message
        else:
            frame["response"] = text
            if thought:
                frame["thinking"] = thought
        frame["done"] = False
        return frame

    def tool_calls(self) -> list[dict[str, Any]]:
        return [call.as_ollama(i) for i, (_, call) in enumerate(sorted(self._calls.items()))]

    def _call_frames(self) -> list[dict[str, Any]]:
        """Chat streams send the joined tool calls once complete, before the last frame
        (as Ollama does); generate sends them with the last frame."""
        calls = self.tool_calls()[self._calls_sent :]
        if self.kind != "chat" or not calls:
            return []
        self._calls_sent += len(calls)
        frame = self._frame("", "")
        frame["message"]["tool_calls"] = calls
        return [frame]

    def final(self, *, streamed: bool) -> list[dict[str, Any]]:
        """The closing frames: tool calls not yet sent, then `done: true` with the
        metrics; without streaming, one object with the whole answer."""
        frames = self._call_frames() if streamed else []
        text = "" if streamed else "".join(self._content)
        thought = "" if streamed else "".join(self._thinking)
        last = self._frame(text, thought)
        calls = self.tool_calls()
        if calls and (not streamed or self.kind == "generate"):
            if self.kind == "chat":
                last["message"]["tool_calls"] = calls
            else:
                last["tool_calls"] = calls
        last["done"] = True
        last["done_reason"] = done_reason(self._finish)
        last.update(self.metrics())
        return [*frames, last]

    def metrics(self) -> dict[str, int]:
        """Ollama's counts and nanosecond durations (zeros left out, as Ollama does)."""
        end = self._clock()
        values = {
            "total_duration": nanoseconds(end - self.started),
            "load_duration": nanoseconds(self.granted - self.started),
        }
        timings = self._timings
        if _number(timings.get("predicted_n")) is not None:
            values["prompt_eval_count"] = int(
                (_number(timings.get("cache_n")) or 0) + (_number(timings.get("prompt_n")) or 0)
            )
            values["prompt_eval_duration"] = _milliseconds(timings.get("prompt_ms"))
            values["eval_count"] = int(_number(timings.get("predicted_n")) or 0)
            values["eval_duration"] = _milliseconds(timings.get("predicted_ms"))
        else:
            usage = self._usage
            values["prompt_eval_count"] = int(_number(usage.get("prompt_tokens")) or 0)
            values["eval_count"] = int(_number(usage.get("completion_tokens")) or 0)
            first = self._first if self._first is not None else end
            values["prompt_eval_duration"] = nanoseconds(first - self.sent)
            values["eval_duration"] = nanoseconds((self._last or first) - first)
        return {name: value for name, value in values.items() if value}


def _milliseconds(value: Any) -> int:
    """llama.cpp's milliseconds in nanoseconds."""
    return max(0, round((_number(value) or 0.0) * 1_000_000))


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


# --- embeddings -------------------------------------------------------------------------


def embedding_vectors(document: Any) -> list[list[float]]:
    """The vectors of an OpenAI embeddings answer, in input order."""
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, list):
        raise UpstreamFailed("the upstream's embeddings answer has no data")
    ordered = sorted(
        (item for item in data if isinstance(item, dict)),
        key=lambda item: item.get("index", 0) if isinstance(item.get("index"), int) else 0,
    )
    vectors = []
    for item in ordered:
        vector = item.get("embedding")
        if not isinstance(vector, list) or not all(_number(v) is not None for v in vector):
            raise UpstreamFailed("the upstream's embeddings answer is not float vectors")
        vectors.append([float(v) for v in vector])
    return vectors


def normalised(vector: list[float], dimensions: int | None = None) -> list[float]:
    """As Ollama's /api/embed: cut to `dimensions`, then scale to unit length."""
    if dimensions:
        vector = vector[:dimensions]
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm > 0 else vector


def prompt_tokens(document: Any) -> int:
    usage = document.get("usage") if isinstance(document, dict) else None
    value = _number(usage.get("prompt_tokens")) if isinstance(usage, dict) else None
    return int(value or 0)
