"""Token usage from the end of a response (OpenAI `usage`, llama.cpp `timings`).

Read once after the response is complete, from the bounded tail the proxy kept, so
nothing is parsed per chunk on the hot path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TokenUsage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    predicted_per_second: float | None = None


def _documents(tail: bytes) -> list[dict[str, Any]]:
    """JSON objects in the tail: the SSE `data:` payloads, or the whole body."""
    text = tail.decode("utf-8", "replace")
    found: list[dict[str, Any]] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("data:"):
            line = line[5:].strip()
        if not line.startswith("{"):
            continue
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict):
            found.append(document)
    if not found:
        try:
            document = json.loads(text)
        except ValueError:
            return []
        if isinstance(document, dict):
            found.append(document)
    return found


def usage_of(tail: bytes) -> TokenUsage:
    prompt = completion = None
    speed = None
    for document in _documents(tail):
        usage = document.get("usage")
        if isinstance(usage, dict):
            prompt = usage.get("prompt_tokens", usage.get("input_tokens", prompt))
            completion = usage.get("completion_tokens", usage.get("output_tokens", completion))
        timings = document.get("timings")
        if isinstance(timings, dict) and isinstance(
            timings.get("predicted_per_second"), int | float
        ):
            speed = float(timings["predicted_per_second"])
    return TokenUsage(prompt, completion, speed)


def tokens_per_second(tail: bytes, duration: float | None = None) -> float | None:
    usage = usage_of(tail)
    if usage.predicted_per_second is not None:
        return usage.predicted_per_second
    if usage.completion_tokens and duration:
        return usage.completion_tokens / duration
    return None
