"""What the activity store costs a request: the listener's enqueue on the request path,
and the writer's work per row off it (in its worker thread).

    .venv/bin/python scripts/measure_store_cost.py

Prints microseconds per request for: publishing `RequestFinished` on a bus without and
with the store's listener (the difference is the request-path cost), building the
store's fields in the handler (`recording`, captures off and on), and the writer's
parsing + insert per row for a batch (in-memory SQLite and a WAL file).
"""

from __future__ import annotations

import json
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path

import anyio
from aiohttp.test_utils import make_mocked_request

from llamaswap.config import Config
from llamaswap.http.activity import recording
from llamaswap.http.proxy import Exchange
from llamaswap.runtime.events import EventBus, RequestFinished
from llamaswap.store import ActivityStore, CaptureTail

TAIL = (
    b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n' * 40
    + b'data: {"choices":[],"usage":{"prompt_tokens":25,"completion_tokens":40},'
    + b'"timings":{"prompt_n":25,"predicted_n":40,"prompt_per_second":900.0,'
    + b'"predicted_per_second":55.0,"prompt_ms":27,"predicted_ms":727}}\n\ndata: [DONE]\n\n'
)


def per_call(function: Callable[[], object], number: int = 200_000) -> float:
    """Best of 5 runs, in microseconds per call."""
    return min(timeit.repeat(function, number=number, repeat=5)) / number * 1e6


def event() -> RequestFinished:
    return RequestFinished(
        "POST",
        "/v1/chat/completions",
        "m",
        200,
        0.5,
        tail=TAIL,
        recorded=True,
        content_type="text/event-stream",
    )


async def request_path() -> None:
    bus = EventBus()
    finished = event()
    bare = per_call(lambda: bus.publish(finished))
    config = Config()
    store = ActivityStore(lambda: config, None)
    await store.open()
    bus.add_listener(store.listen)
    pending = store._pending
    with_store = per_call(lambda: (bus.publish(finished), pending.clear()))
    clear_only = per_call(pending.clear)
    print(f"bus.publish(RequestFinished), no listener:   {bare:6.3f} us")
    print(f"bus.publish(RequestFinished), store listens: {with_store - clear_only:6.3f} us")
    print(f"  => the store's enqueue on the request path: {with_store - clear_only - bare:6.3f} us")
    await store.close()

    request = make_mocked_request(
        "POST",
        "/v1/chat/completions",
        headers={"Content-Type": "application/json"},
        app=_app(Config()),
    )
    exchange = Exchange(tail=bytearray(TAIL))
    off = per_call(lambda: recording(request, exchange, b"{}", recorded=True), 100_000)
    print(f"recording() fields, captures off:            {off:6.3f} us")
    captured_request = make_mocked_request(
        "POST",
        "/v1/chat/completions",
        headers={"Content-Type": "application/json"},
        app=_app(Config(captureBuffer=5)),
    )
    tail = CaptureTail(8 << 20)
    tail += TAIL
    captured = Exchange(tail=tail)
    on = per_call(lambda: recording(captured_request, captured, b"{}", recorded=True), 100_000)
    print(f"recording() fields, captures on (5 MB):      {on:6.3f} us")


def _app(config: Config) -> object:
    from aiohttp import web

    from llamaswap.http.service import SERVICE

    class FakeService:
        def __init__(self) -> None:
            self.config = config

    app = web.Application()
    app[SERVICE] = FakeService()  # type: ignore[assignment]
    return app


async def writer(path: str | None, rows: int = 20_000, capture_mb: int = 0) -> None:
    config = Config(captureBuffer=capture_mb, metricsMaxInMemory=rows, storeMaxRows=rows)
    store = ActivityStore(lambda: config, path)
    await store.open()
    finished = event()
    for _ in range(rows):
        store.listen(finished)
    started = time.perf_counter()
    await store.flush()
    elapsed = time.perf_counter() - started
    kind = "WAL file" if path else "memory"
    print(f"writer thread, {rows} rows in one batch ({kind}): {elapsed / rows * 1e6:6.2f} us/row")
    await store.close()


def capture_cost() -> None:
    from dataclasses import replace

    from llamaswap.runtime.events import RequestCapture
    from llamaswap.store.captures import CaptureRing

    headers = {"Content-Type": "application/json", "User-Agent": "bench", "Accept": "*/*"}
    capture = RequestCapture(headers, b'{"model":"m"}' * 20, headers, TAIL, len(TAIL))
    ring = CaptureRing(5 * 1024 * 1024)
    ids = iter(range(10**9))
    finished = replace(event(), capture=capture)
    kept = per_call(lambda: (ring.add(next(ids), "/v1/chat/completions", capture),), 50_000)
    dropped = per_call(lambda: replace(finished, capture=None), 50_000)
    one = CaptureRing(1024 * 1024)
    one.add(1, "/v1/chat/completions", capture)
    shown = per_call(lambda: one.get(1), 5_000)
    print(f"listener, a capture into the ring ({len(TAIL)} B response): {kept:6.2f} us")
    print(f"listener, the queued event without its capture:       {dropped:6.2f} us")
    print(f"reading one capture (JSON, headers redacted):          {shown:6.2f} us")


async def main() -> None:
    await request_path()
    capture_cost()
    await writer(None)
    with tempfile.TemporaryDirectory() as folder:
        await writer(str(Path(folder) / "activity.sqlite"))
    print(json.dumps({"note": "writer costs are CPU in a worker thread, not on the loop"}))


if __name__ == "__main__":
    anyio.run(main)
