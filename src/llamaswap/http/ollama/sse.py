"""Server-sent events from an upstream, decoded incrementally and without line limits.

The upstream's chunks split events anywhere (mid-line, mid-UTF-8 character); a tool
call's arguments can make one `data:` line long. Bytes are buffered until an event ends
(a blank line), and each event's `data:` lines are joined as the SSE spec says.
"""

from __future__ import annotations

import json
from typing import Any

DONE = "[DONE]"


class SseDecoder:
    """Feed bytes, get the `data` payloads of the events they completed."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._scanned = 0  # bytes of the buffer known to hold no newline
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[str]:
        buffer = self._buffer
        buffer += chunk
        payloads: list[str] = []
        start = 0
        while (newline := buffer.find(b"\n", max(start, self._scanned))) >= 0:
            line = bytes(buffer[start:newline]).rstrip(b"\r").decode("utf-8", "replace")
            start = newline + 1
            payload = self._line(line)
            if payload is not None:
                payloads.append(payload)
        del buffer[:start]
        self._scanned = len(buffer)
        return payloads

    def close(self) -> list[str]:
        """The payload of a last event the upstream did not end with a blank line."""
        payloads = self.feed(b"\n") if self._buffer else []
        if self._data:
            payloads.append("\n".join(self._data))
            self._data = []
        return payloads

    def _line(self, line: str) -> str | None:
        if not line:
            if not self._data:
                return None
            payload = "\n".join(self._data)
            self._data = []
            return payload
        if line.startswith(":"):
            return None  # a comment (keep-alive)
        field, _, value = line.partition(":")
        if field == "data":
            self._data.append(value[1:] if value.startswith(" ") else value)
        return None


def chunk_of(payload: str) -> Any:
    """The JSON of one event (None for `[DONE]` and for anything that is not JSON)."""
    if payload.strip() == DONE:
        return None
    try:
        return json.loads(payload)
    except ValueError:
        return None
