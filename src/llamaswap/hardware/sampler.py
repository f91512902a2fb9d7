"""The performance monitor (`performance.every`): CPU, memory, load, network and GPUs,
sampled into rings that hold the last hour, as llama-swap's `internal/perf` does.

`/api/performance` reads the rings (llama-swap's `{enabled, sys_stats, gpu_stats}`) and
`/metrics` the latest sample. Sampling runs in a worker thread, every `every` seconds
(the first one before the server answers, so the UI has figures at once); with
`performance.disabled` nothing is sampled.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.to_thread
import psutil

from . import gpus

log = logging.getLogger("llamaswap.hardware")
HOUR = 3600.0
MIB = 1024 * 1024


STAMP = "%Y-%m-%dT%H:%M:%S.%fZ"  # RFC 3339 in UTC with microseconds: sorts as text


def sys_stat(now: str) -> dict[str, Any]:
    """llama-swap's `SysStat`."""
    memory, swap = psutil.virtual_memory(), psutil.swap_memory()
    stat: dict[str, Any] = {
        "timestamp": now,
        "cpu_util_per_core": [float(p) for p in psutil.cpu_percent(percpu=True)],
        "mem_total_mb": int(memory.total // MIB),
        "mem_used_mb": int(memory.used // MIB),
        "mem_free_mb": int(memory.available // MIB),
        "swap_total_mb": int(swap.total // MIB),
        "swap_used_mb": int(swap.used // MIB),
    }
    try:
        counters = psutil.net_io_counters(pernic=True)
    except OSError:
        counters = {}
    stat["net_io"] = [
        {"name": name, "bytes_recv": c.bytes_recv, "bytes_sent": c.bytes_sent}
        for name, c in sorted(counters.items())
        if name != "lo"
    ]
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        one = five = fifteen = 0.0
    return stat | {"load_avg_1": one, "load_avg_5": five, "load_avg_15": fifteen}


class PerformanceMonitor:
    """Samples while `run` runs; `every` is read from the config at each tick."""

    def __init__(self, every: Callable[[], float], enabled: Callable[[], bool]) -> None:
        self._every = every
        self._enabled = enabled
        # (Unix time, sample): the time filters `current(after=)`
        self.sys_stats: deque[tuple[float, dict[str, Any]]] = deque(maxlen=self._capacity())
        self.gpu_stats: deque[tuple[float, list[dict[str, Any]]]] = deque(maxlen=self._capacity())
        self._nvml: gpus.Nvml | None = None
        self._rocm = True  # until rocm-smi is found missing

    def _capacity(self) -> int:
        return max(1, int(HOUR / max(self._every(), 0.1)))

    async def first(self) -> None:
        """The first sample, taken before the server answers (the UI has figures at once)."""
        psutil.cpu_percent(percpu=True)  # the first reading primes the counters
        await self._sample()

    async def run(self) -> None:
        """A sample every `every` seconds after `first`."""
        while True:
            await anyio.sleep(self._every())
            await self._sample()

    async def _sample(self) -> None:
        if self._enabled():
            try:
                await anyio.to_thread.run_sync(self.sample)
            except Exception:
                log.warning("performance: sampling failed", exc_info=True)

    def sample(self) -> None:
        """One sample of everything (blocking: a worker thread)."""
        # the moment is what the stamp says (whole microseconds), so a client's `after`
        # set to a sample's own timestamp leaves that sample out
        taken = datetime.now(UTC)
        now = taken.strftime(STAMP)
        moment = taken.timestamp()
        capacity = self._capacity()
        if self.sys_stats.maxlen != capacity:
            self.sys_stats = deque(self.sys_stats, maxlen=capacity)
            self.gpu_stats = deque(self.gpu_stats, maxlen=capacity)
        self.sys_stats.append((moment, sys_stat(now)))
        found = self._gpus(now)
        if found:
            self.gpu_stats.append((moment, found))

    def _gpus(self, now: str) -> list[dict[str, Any]]:
        if self._nvml is None:
            self._nvml = gpus.Nvml()
        found = self._nvml.stats(now)
        if self._rocm:
            rows = gpus.rocm_rows()
            self._rocm = bool(rows)
            found += [stat for row in rows if (stat := gpus.rocm_stat(row, now))]
        return found

    def current(self, after: float | None = None) -> tuple[list[Any], list[Any]]:
        """(sys_stats, gpu_stats) sampled after `after` (Unix time), oldest first."""
        cut = float("-inf") if after is None else after
        sys_stats = [stat for moment, stat in list(self.sys_stats) if moment > cut]
        gpu_stats = [g for moment, sample in list(self.gpu_stats) if moment > cut for g in sample]
        return sys_stats, gpu_stats

    def latest(self) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The newest system sample and the newest GPU sample (for /metrics)."""
        sys_stats = self.sys_stats[-1][1] if self.sys_stats else None
        return sys_stats, list(self.gpu_stats[-1][1]) if self.gpu_stats else []
