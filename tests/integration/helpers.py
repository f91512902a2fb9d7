"""Helpers for tests that run real processes and real HTTP on 127.0.0.1."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import anyio

from llamaswap.runtime.events import ProcessStateChanged
from llamaswap.runtime.process import ProcessActor, UpstreamSettings
from llamaswap.testing import upstream_command
from llamaswap.testing.ports import free_port


def fake_cmd(port: int, *options: str) -> str:
    """A `cmd` string (as in the YAML) that starts the fake upstream on `port`."""
    return " ".join(upstream_command(port, "--silent", *options))


def fake_settings(model: str = "m", *options: str, **overrides: object) -> UpstreamSettings:
    port = free_port()
    values: dict[str, object] = {
        "model": model,
        "cmd": fake_cmd(port, *options),
        "proxy": f"http://127.0.0.1:{port}",
        "health_check_timeout": 15.0,
        "unload_timeout": 5.0,
    }
    values.update(overrides)
    return UpstreamSettings(**values)  # type: ignore[arg-type]


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def kill_quietly(pid: int, sig: int = signal.SIGKILL) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, sig)


class StateLog:
    """Records state-change events and lets a test await a particular state."""

    def __init__(self) -> None:
        self.events: list[ProcessStateChanged] = []
        self._changed = anyio.Event()

    def __call__(self, event: ProcessStateChanged) -> None:
        if not event.changed:
            return  # an acknowledged command that changed nothing
        self.events.append(event)
        self._changed.set()
        self._changed = anyio.Event()

    @property
    def path(self) -> list[tuple[str, str]]:
        return [(e.old, e.new) for e in self.events]

    async def wait_for(self, state: str, count: int = 1) -> ProcessStateChanged:
        """Wait until the `count`-th transition into `state` has happened."""
        while True:
            hits = [e for e in self.events if e.new == state]
            if len(hits) >= count:
                return hits[count - 1]
            await self._changed.wait()


@asynccontextmanager
async def running_actor(settings: UpstreamSettings) -> AsyncIterator[tuple[ProcessActor, StateLog]]:
    """A started ProcessActor; shut down (and its upstream killed) on exit."""
    log = StateLog()
    actor = ProcessActor(settings, on_change=log)
    async with anyio.create_task_group() as tg:
        await tg.start(actor.run)
        try:
            yield actor, log
        finally:
            with anyio.fail_after(30):
                await actor.shutdown(2.0)
