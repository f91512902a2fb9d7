"""How a process actor launches and watches an upstream: real processes, or test doubles.

The actor's lifecycle logic is the same either way; only these slow operations differ.
`llamaswap.testing.gated.GatedLauncher` replaces them with gates a test opens, so
router tests and the actor-level property test need no subprocesses and no sleeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .health import wait_until_healthy
from .logs import LogRing
from .spawn import UpstreamProcess


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
    def spawn(self, argv: Sequence[str], env: dict[str, str], log_ring: LogRing) -> Upstream:
        """Start the upstream; raise OSError when it cannot be executed."""
        ...

    async def wait_healthy(self, upstream: Upstream, url: str, limit: float) -> None:
        """Return once `url` answers 200; raise HealthTimeout after `limit` seconds."""
        ...


class SubprocessLauncher:
    """Real upstream processes (the default)."""

    def spawn(self, argv: Sequence[str], env: dict[str, str], log_ring: LogRing) -> Upstream:
        return UpstreamProcess.spawn(argv, env, log_ring)

    async def wait_healthy(self, upstream: Upstream, url: str, limit: float) -> None:
        await wait_until_healthy(url, limit)


SUBPROCESSES = SubprocessLauncher()
