"""`GET /api/hardware` and `GET /api/performance`, in llama-swap's shapes.

`/api/hardware` is the machine's HardwareSnapshot, detected once on first use (NVML can
take a moment to initialise) and kept; 503 when not even the memory size is known.
`/api/performance` is the performance monitor's last hour (`?after=<RFC 3339>` for the
samples after a moment); 503 `{"enabled": false}` with `performance.disabled`, as in
llama-swap. The monitor's latest sample also feeds the CPU, memory and GPU gauges of
`/metrics` (`llamaswap.http.metrics.HardwareCollector`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import anyio
import anyio.to_thread
from aiohttp import web

from llamaswap import __version__
from llamaswap.hardware import PerformanceMonitor, detect
from llamaswap.store.query import RFC3339

from ..capacity import capacity_view
from ..errors import error_response
from ..metrics import HardwareCollector
from ..service import SERVICE, service_of
from .metrics import METRICS

MONITOR = web.AppKey("llamaswap_performance", PerformanceMonitor)


class Snapshot:
    """The hardware snapshot, detected once (concurrent first requests share the work)."""

    def __init__(self) -> None:
        self._lock = anyio.Lock()
        self._done = False
        self.value: dict[str, Any] | None = None

    async def get(self) -> dict[str, Any] | None:
        async with self._lock:
            if not self._done:
                self.value = await anyio.to_thread.run_sync(detect, __version__)
                self._done = True
        return self.value


SNAPSHOT = web.AppKey("llamaswap_hardware", Snapshot)


def add_routes(app: web.Application) -> None:
    service = app[SERVICE]
    monitor = PerformanceMonitor(
        lambda: service.config.performance_every, lambda: not service.config.performance_disabled
    )
    app[MONITOR] = monitor
    app[SNAPSHOT] = Snapshot()
    if METRICS in app:
        app[METRICS].registry.register(HardwareCollector(monitor.latest))
    app.cleanup_ctx.append(_sampling)
    app.router.add_get("/api/hardware", hardware)
    app.router.add_get("/api/performance", performance)


async def _sampling(app: web.Application) -> AsyncIterator[None]:
    await app[MONITOR].first()
    task = asyncio.get_running_loop().create_task(app[MONITOR].run(), name="performance")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def hardware(request: web.Request) -> web.Response:
    """llama-swap's HardwareSnapshot, plus ours: `resources` (capacity.py) when the
    config declares any."""
    snapshot = await request.app[SNAPSHOT].get()
    if snapshot is None:
        return error_response(request, 503, "hardware detection unavailable")
    resources = capacity_view(service_of(request))
    return web.json_response({**snapshot, "resources": resources} if resources else snapshot)


async def performance(request: web.Request) -> web.Response:
    if service_of(request).config.performance_disabled:
        return web.json_response({"enabled": False}, status=503)
    after = None
    if raw := request.query.get("after", "").strip():
        if not RFC3339.match(raw):
            return error_response(request, 400, "invalid 'after' timestamp, use RFC3339 format")
        after = datetime.fromisoformat(raw.upper().replace("Z", "+00:00")).timestamp()
    sys_stats, gpu_stats = request.app[MONITOR].current(after)
    return web.json_response({"enabled": True, "sys_stats": sys_stats, "gpu_stats": gpu_stats})
