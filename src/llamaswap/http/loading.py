"""The loading-state stream (sendLoadingState): progress while a chat request waits.

Only after the router has admitted the request (so a 429 is always sent as a plain
error, never after a 200) does the stream start: a 200 `text/event-stream` whose
events carry text in `choices[0].delta.reasoning_content`, which chat UIs show as the
model "thinking": the model being loaded, queue positions, elapsed seconds. When the
model is granted the real upstream stream is appended to the same response.
"""

from __future__ import annotations

import json

import anyio
from aiohttp import web

RULE = "━━━━━"
TICK_SECONDS = 0.75
ELAPSED_EVERY_TICKS = 4


def reasoning_event(text: str) -> bytes:
    payload = {"choices": [{"index": 0, "delta": {"reasoning_content": text}}]}
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


def wants_loading_stream(path: str, streaming: bool, send_loading_state: bool) -> bool:
    return streaming and send_loading_state and path.startswith("/v1/chat/completions")


class LoadingStream:
    """Runs beside a waiting request; `run` in a task, `finish` once the wait is over."""

    def __init__(self, request: web.Request, model: str, *, tick: float = TICK_SECONDS) -> None:
        self._request = request
        self._model = model
        self._tick = tick
        self._admitted = anyio.Event()
        self._position: int | None = None
        self._shown_position: int | None = None
        self._started_at = anyio.current_time()
        self._scope = anyio.CancelScope()
        self._stopped = anyio.Event()
        self.response: web.StreamResponse | None = None

    # router callbacks (called from the router actor; must not block)
    def admitted(self) -> None:
        self._admitted.set()

    def position(self, position: int) -> None:
        self._position = position

    async def run(self) -> None:
        try:
            await self._stream()
        finally:
            self._stopped.set()

    async def _stream(self) -> None:
        with self._scope:
            await self._admitted.wait()
            response = web.StreamResponse(
                status=200,
                headers={
                    "Content-Type": "text/event-stream",
                    "Cache-Control": "no-cache",
                    "X-Accel-Buffering": "no",
                },
            )
            await response.prepare(self._request)
            self.response = response
            await response.write(
                reasoning_event(f"{RULE}\nllamaswap loading model: {self._model}\n")
            )
            ticks = 0
            while True:
                await anyio.sleep(self._tick)
                ticks += 1
                await response.write(reasoning_event(self._progress(ticks)))

    def _progress(self, ticks: int) -> str:
        if self._position is not None and self._position != self._shown_position:
            self._shown_position = self._position
            return f"\nQueue position: #{self._position} "
        if ticks % ELAPSED_EVERY_TICKS == 0:
            return f" {anyio.current_time() - self._started_at:.0f}s "
        return "."

    async def finish(self, *, ok: bool) -> web.StreamResponse | None:
        """Stop the progress; on success close the loading text. Returns the open stream."""
        self._scope.cancel()
        await self._stopped.wait()
        if self.response is not None and ok:
            elapsed = anyio.current_time() - self._started_at
            await self.response.write(reasoning_event(f"\nDone! ({elapsed:.2f}s)\n{RULE}\n \n"))
        return self.response
