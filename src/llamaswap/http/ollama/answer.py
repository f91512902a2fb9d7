"""Writing an Ollama answer: NDJSON frames as they come, or one JSON object.

Nothing is sent before the first frame, so an upstream that refuses, or a model that
cannot start, is still answered with its own status; after that, an error is one more
line (`{"error": ...}`), as Ollama does it. Writes are bounded by `clientWriteTimeout`
like the byte proxy's: a client that stops reading is cut and the lease freed.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from aiohttp import web

from .. import stalls
from ..proxy import Exchange
from .errors import error_line, ollama_error

NDJSON = "application/x-ndjson"


def encode(frame: dict[str, Any]) -> bytes:
    """One NDJSON line, UTF-8 as Ollama writes it."""
    return _dumps(frame).encode() + b"\n"


class Answer:
    """The response to one request; records its status in the `Exchange`."""

    def __init__(self, request: web.Request, exchange: Exchange, *, streaming: bool) -> None:
        self.request = request
        self.exchange = exchange
        self.streaming = streaming
        self._last: dict[str, Any] | None = None
        self._seconds = stalls.write_timeout(request)

    @property
    def started(self) -> bool:
        response = self.exchange.response
        return response is not None and response.prepared

    async def frame(self, frame: dict[str, Any]) -> None:
        """Stream one frame (or keep it: without streaming only the last one counts)."""
        self._last = frame
        if not self.streaming:
            return
        response = self.exchange.response
        if response is None:
            response = web.StreamResponse(headers={"Content-Type": NDJSON})
            self.exchange.response = response
            self.exchange.status = 200
            await response.prepare(self.request)
        await stalls.write(self.request, response, encode(frame), self._seconds)

    async def finish(self) -> web.StreamResponse:
        """End a complete answer."""
        self.exchange.status = 200
        if not self.streaming:
            return web.json_response(self._last or {}, dumps=_dumps)
        response = self.exchange.response
        assert response is not None, "a streamed answer ends with a frame"
        await stalls.write_eof(self.request, response, self._seconds)
        return response

    async def fail(self, status: int, message: str) -> web.StreamResponse:
        """End with an error: its status if nothing was sent yet, else an error line."""
        response = self.exchange.response
        if response is None or not response.prepared:
            self.exchange.status = status
            return ollama_error(status, message)
        self.exchange.status = status
        with contextlib.suppress(ConnectionError, RuntimeError, stalls.ClientStalled):
            await stalls.write(self.request, response, error_line(message), self._seconds)
            await stalls.write_eof(self.request, response, self._seconds)
        return response

    def as_sent(self) -> web.StreamResponse:
        """What a client that stalled was sent (its connection is already cut)."""
        return self.exchange.response or ollama_error(503, "client stalled")


def _dumps(value: Any) -> str:
    """Compact JSON with raw UTF-8; escaped instead when the text has a lone surrogate
    (an upstream's JSON may carry one), which UTF-8 cannot encode."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode()
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":"))
    return text
