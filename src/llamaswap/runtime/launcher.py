"""How a process actor launches and watches an upstream: real processes, or test doubles.

The actor's lifecycle logic is the same either way; only these slow operations differ.
`llamaswap.testing.gated.GatedLauncher` replaces them with gates a test opens, so
router tests and the actor-level property test need no subprocesses and no sleeps.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Protocol

import anyio

from .health import wait_until_healthy
from .logs import LogRing
from .portcheck import check_port_free, foreign_listener
from .spawn import UpstreamProcess

log = logging.getLogger("llamaswap.process")


class Upstream(Protocol):
    """A running upstream as the process actor sees it."""

    pid: int

    async def supervise(self) -> int:
        """Return the exit code once the upstream (and its whole group) is gone."""
        ...

    async def terminate(
        self, grace: float, stop_argv: Sequence[str] | None, env: dict[str, str]
    ) -> None:
        """Stop it (cmdStop or SIGTERM), forcefully after `grace` seconds."""
        ...


class Launcher(Protocol):
    def spawn(
        self, argv: Sequence[str], env: dict[str, str], log_ring: LogRing, *, proxy: str = ""
    ) -> Upstream:
        """Start the upstream; raise OSError when it cannot be executed (or, given its
        `proxy`, when another process already holds that local port)."""
        ...

    async def wait_healthy(self, upstream: Upstream, url: str, limit: float) -> None:
        """Return once `url` answers 200; raise HealthTimeout after `limit` seconds."""
        ...


class SubprocessLauncher:
    """Real upstream processes (the default)."""

    def spawn(
        self, argv: Sequence[str], env: dict[str, str], log_ring: LogRing, *, proxy: str = ""
    ) -> Upstream:
        """Start the upstream; with its `proxy`, first refuse (PortInUse, an OSError) when
        another process already listens on the proxy's local port."""
        if proxy:  # our own listeners (a test double inside llamaswap) are no rival
            check_port_free(proxy, ours=lambda: {os.getpid()})
        return UpstreamProcess.spawn(argv, env, log_ring)

    async def wait_healthy(self, upstream: Upstream, url: str, limit: float) -> None:
        """Poll `url`, unless another process held its port when the upstream started:
        then its 200 would be that process's. The upstream is killed with the reason in
        its log, so the start fails naming the holder (see `portcheck`)."""
        if isinstance(upstream, UpstreamProcess):
            # Our own listeners are no rival upstream: a proxy pointed back at llamaswap
            # (or at a test double inside it) is not what this check is about.
            taken = foreign_listener(url, lambda: {os.getpid(), *upstream.processes()})
            if taken is not None:
                reason = f"llamaswap: {taken.strerror}: not using it"
                log.warning("[%s] %s", upstream.log_source, reason)
                upstream.abort(reason)
                await anyio.sleep_forever()  # until the actor sees the exit and cancels us
        await wait_until_healthy(url, limit)


SUBPROCESSES = SubprocessLauncher()
