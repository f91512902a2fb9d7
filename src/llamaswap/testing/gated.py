"""Fake upstreams whose start, health and stop finish when a test says so.

`GatedLauncher` plugs into the real `ProcessActor` (and so the real `RouterActor`),
replacing only the slow, external parts: spawning, health polling and termination.
In automatic mode everything completes at once; otherwise a test (or a Hypothesis
rule) opens each gate explicitly, which makes interleavings reproducible without
subprocesses or sleeps. Upstreams are keyed by model id (the log ring's source).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio

from llamaswap.runtime.health import HealthTimeout
from llamaswap.runtime.logs import LogRing

_pids = itertools.count(100_000)


@dataclass(eq=False)
class GatedUpstream:
    """One fake upstream process."""

    model: str
    launcher: GatedLauncher
    pid: int = field(default_factory=lambda: next(_pids))
    healthy: anyio.Event = field(default_factory=anyio.Event)
    health_failed: bool = False
    exited: anyio.Event = field(default_factory=anyio.Event)
    returncode: int | None = None
    stop_requested: anyio.Event = field(default_factory=anyio.Event)
    stop_allowed: anyio.Event = field(default_factory=anyio.Event)
    grace: float | None = None

    async def supervise(self) -> int:
        await self.exited.wait()
        assert self.returncode is not None
        return self.returncode

    async def terminate(
        self, grace: float, stop_argv: Sequence[str] | None, env: dict[str, str]
    ) -> None:
        self.grace = grace
        self.launcher.stops[self.model] += 1
        self.stop_requested.set()
        if self.launcher.auto_stop:
            self.stop_allowed.set()
        await self.stop_allowed.wait()
        self.exit(0)
        await self.exited.wait()

    # -- test controls -------------------------------------------------------------------

    def become_healthy(self) -> None:
        self.healthy.set()

    def fail_health(self) -> None:
        self.health_failed = True
        self.healthy.set()

    def allow_stop(self) -> None:
        self.stop_allowed.set()

    def exit(self, code: int) -> None:
        """The process ends (a crash when nobody asked it to stop)."""
        if self.returncode is None:
            self.returncode = code
            self.exited.set()


class GatedLauncher:
    """Launches `GatedUpstream`s; `auto_*` complete that phase at once."""

    def __init__(self, *, auto_ready: bool = True, auto_stop: bool = True) -> None:
        self.auto_ready = auto_ready
        self.auto_stop = auto_stop
        self.upstreams: dict[str, list[GatedUpstream]] = {}
        self.starts: Counter[str] = Counter()
        self.stops: Counter[str] = Counter()
        self.spawned = anyio.Event()
        self.fail_spawn: set[str] = set()

    def spawn(
        self, argv: Sequence[str], env: dict[str, str], log_ring: LogRing, *, proxy: str = ""
    ) -> GatedUpstream:
        model = log_ring.source
        if model in self.fail_spawn:
            raise OSError(2, "No such file or directory")
        upstream = GatedUpstream(model, self)
        self.upstreams.setdefault(model, []).append(upstream)
        self.starts[model] += 1
        log_ring.append(f"gated upstream {model} started as pid {upstream.pid}")
        self.spawned.set()
        self.spawned = anyio.Event()
        return upstream

    async def wait_healthy(self, upstream: object, url: str, limit: float) -> None:
        assert isinstance(upstream, GatedUpstream)
        if self.auto_ready:
            upstream.healthy.set()
        await upstream.healthy.wait()
        if upstream.health_failed:
            raise HealthTimeout(f"no 200 from {url} after {limit:g}s")

    def open_all_gates(self) -> None:
        """From now on every stop completes at once (lets a test shut down cleanly)."""
        self.auto_stop = True
        for upstreams in self.upstreams.values():
            for upstream in upstreams:
                upstream.allow_stop()

    def current(self, model: str) -> GatedUpstream:
        """The most recently spawned upstream of `model`."""
        return self.upstreams[model][-1]

    def running(self) -> set[str]:
        """Models whose latest upstream has not exited."""
        return {m for m, ups in self.upstreams.items() if ups and ups[-1].returncode is None}
