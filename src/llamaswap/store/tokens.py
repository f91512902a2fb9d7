"""Token figures of one response, read as llama-swap's metrics monitor reads them.

Sources, in llama-swap's order of precedence: the OpenAI/Anthropic `usage` object (at
`usage`, `response.usage` or `message.usage`), llama.cpp's `timings` (which override the
counts and give the speeds), and vLLM's `metrics` (speeds, speculative decoding). A
stream is read event by event (`data:` lines); a JSON body as a whole; `/infill` answers
are arrays whose last element carries the timings.

Runs in the activity store's writer thread, never on the request path. Unknown figures
are llama-swap's sentinels: 0 tokens, -1 for cached and draft tokens and for speeds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

USAGE_PATHS = (("usage",), ("response", "usage"), ("message", "usage"))


@dataclass(frozen=True, slots=True)
class TokenFigures:
    input: int = 0
    output: int = 0
    cached: int = -1
    draft: int = -1
    draft_accepted: int = -1
    prompt_per_second: float = -1.0
    tokens_per_second: float = -1.0
    timed_ms: int = 0  # llama.cpp's prompt_ms + predicted_ms (0: not reported)


NONE = TokenFigures()


def _get(document: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _int(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


@dataclass
class _Usage:
    input: int = 0
    output: int = 0
    cached: int = -1
    found: bool = False

    def read(self, usage: Any, *, overwrite_zero: bool) -> None:
        """llama-swap's extractUsageTokens; a stream keeps the last non-zero counts."""
        if not isinstance(usage, dict):
            return
        for names, attr in (
            (("prompt_tokens", "input_tokens"), "input"),
            (("completion_tokens", "output_tokens"), "output"),
        ):
            for name in names:
                if name in usage:
                    value = _int(usage[name]) or 0
                    self.found = True
                    if value > 0 or overwrite_zero:
                        setattr(self, attr, value)
                    break
        for path in (
            ("cache_read_input_tokens",),
            ("input_tokens_details", "cached_tokens"),
            ("prompt_tokens_details", "cached_tokens"),
        ):
            value = _get(usage, *path)
            if value is not None:
                self.cached = _int(value) or 0
                self.found = True
                break


# A stream's figures are only in events with one of these keys; every other event (the
# bulk: one per token) is skipped without parsing. A quote inside a JSON string is
# escaped, so these bytes appear only as keys (or as whole string values).
FIGURE_KEYS = (b'"usage"', b'"timings"', b'"metrics"', b'"error"')


def _lines_with(body: bytes, keys: tuple[bytes, ...]) -> list[bytes]:
    """The lines of `body` that contain one of `keys`, in order: found with `bytes.find`,
    so a long stream of token events costs no Python work per line."""
    spans: set[tuple[int, int]] = set()
    for key in keys:
        at = body.find(key)
        while at >= 0:
            start = body.rfind(b"\n", 0, at) + 1
            end = body.find(b"\n", at)
            end = len(body) if end < 0 else end
            spans.add((start, end))
            at = body.find(key, end)
    return [body[start:end] for start, end in sorted(spans)]


def _documents_of_stream(body: bytes, keys: tuple[bytes, ...] = ()) -> list[dict[str, Any]]:
    """The JSON objects of an event stream's `data:` lines (a cut first line is skipped);
    with `keys`, only the lines that contain one of them."""
    found = []
    for raw in _lines_with(body, keys) if keys else body.split(b"\n"):
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if not data.startswith(b"{"):
            continue
        try:
            document = json.loads(data)
        except ValueError:
            continue
        if isinstance(document, dict):
            found.append(document)
    return found


def figures_of(body: bytes, content_type: str = "", path: str = "") -> TokenFigures:
    """The figures in a response body (or its tail); NONE when it carries none."""
    if not body:
        return NONE
    streamed = "text/event-stream" in content_type or (
        not content_type and (body.lstrip().startswith(b"data:") or b"\ndata:" in body)
    )
    if streamed:
        return _from_stream(body)
    try:
        document = json.loads(body)
    except ValueError:
        return NONE
    return _from_document(document, path)


def _from_stream(body: bytes) -> TokenFigures:
    usage = _Usage()
    timings: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    for document in _documents_of_stream(body, FIGURE_KEYS):
        for path in USAGE_PATHS:
            usage.read(_get(document, *path), overwrite_zero=False)
        if isinstance(document.get("timings"), dict):
            timings = document["timings"]
        if isinstance(document.get("metrics"), dict):
            metrics = document["metrics"]
    if not usage.found and timings is None and metrics is None:
        return NONE
    return _build(usage, timings, metrics)


def _from_document(document: Any, path: str) -> TokenFigures:
    if isinstance(document, list):
        if not (path.endswith("/infill") and document):
            return NONE
        last = document[-1]
        timings = last.get("timings") if isinstance(last, dict) else None
        return _build(_Usage(), timings if isinstance(timings, dict) else None, None)
    if not isinstance(document, dict):
        return NONE
    usage = _Usage()
    usage.read(document.get("usage"), overwrite_zero=True)
    timings = document.get("timings")
    metrics = document.get("metrics")
    timings = timings if isinstance(timings, dict) else None
    metrics = metrics if isinstance(metrics, dict) else None
    if "usage" not in document and timings is None and metrics is None:
        return NONE
    return _build(usage, timings, metrics)


def _build(
    usage: _Usage, timings: dict[str, Any] | None, metrics: dict[str, Any] | None
) -> TokenFigures:
    """llama-swap's buildMetrics: timings override usage; vLLM metrics give the speeds."""
    inputs, outputs, cached = usage.input, usage.output, usage.cached
    prompt_speed = generation_speed = -1.0
    draft = accepted = -1
    timed_ms = 0
    if timings is not None:
        inputs = _int(timings.get("prompt_n")) or 0
        outputs = _int(timings.get("predicted_n")) or 0
        prompt_speed = _number(timings.get("prompt_per_second")) or 0.0
        generation_speed = _number(timings.get("predicted_per_second")) or 0.0
        timed_ms = int(
            (_number(timings.get("prompt_ms")) or 0.0)
            + (_number(timings.get("predicted_ms")) or 0.0)
        )
        if "cache_n" in timings:
            cached = _int(timings["cache_n"]) or 0
        if "draft_n" in timings and "draft_n_accepted" in timings:
            draft = _int(timings["draft_n"]) or 0
            accepted = _int(timings["draft_n_accepted"]) or 0
    if metrics is not None:
        speculative = metrics.get("speculative_decoding")
        if (
            isinstance(speculative, dict)
            and {
                "num_draft_tokens",
                "num_accepted_draft_tokens",
            }
            <= speculative.keys()
        ):
            draft = _int(speculative["num_draft_tokens"]) or 0
            accepted = _int(speculative["num_accepted_draft_tokens"]) or 0
        first_token_ms = _number(metrics.get("time_to_first_token_ms"))
        if first_token_ms and first_token_ms > 0:
            prompt_speed = (inputs - max(cached, 0)) / (first_token_ms / 1000)
        inter_token_ms = _number(metrics.get("mean_itl_ms"))
        if inter_token_ms and inter_token_ms > 0:
            generation_speed = 1000 / inter_token_ms
    return TokenFigures(
        input=inputs,
        output=outputs,
        cached=cached,
        draft=draft,
        draft_accepted=accepted,
        prompt_per_second=prompt_speed,
        tokens_per_second=generation_speed,
        timed_ms=timed_ms,
    )


ERROR_PATHS = (("error", "message"), ("error",), ("message",), ("detail",))
MAX_ERROR_CHARS = 500


def error_message(status: int, body: bytes) -> str:
    """llama-swap's failedErrorMessage: the body's error text, else the status text."""
    try:
        document = json.loads(body) if body else None
    except ValueError:
        document = None
    if document is None and body.lstrip().startswith(b"data:"):
        events = _documents_of_stream(body)
        document = events[-1] if events else None
    for path in ERROR_PATHS:
        value = _get(document, *path)
        if isinstance(value, str) and value.strip():
            text = value.strip()
            return text[:MAX_ERROR_CHARS] + "..." if len(text) > MAX_ERROR_CHARS else text
    return status_text(status)


def status_text(status: int) -> str:
    if status == 499:
        return "499 Client Closed Request"
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"
