"""Run a real RouterActor over gated fake processes."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio

from llamaswap.config import parse_config
from llamaswap.runtime.events import EventBus
from llamaswap.runtime.router import RouterActor
from llamaswap.testing.gated import GatedLauncher


def config_of(yaml_text: str) -> Any:
    return parse_config(textwrap.dedent(yaml_text))


def models_yaml(*names: str, extra: str = "") -> str:
    lines = ["models:"]
    for name in names:
        lines += [f"  {name}:", f"    cmd: fake --model {name} --port ${{PORT}}", extra]
    return "\n".join(line for line in lines if line)


@asynccontextmanager
async def running_router(
    yaml_text: str, launcher: GatedLauncher | None = None
) -> AsyncIterator[tuple[RouterActor, GatedLauncher]]:
    launcher = launcher or GatedLauncher()
    router = RouterActor(config_of(yaml_text), bus=EventBus(), launcher=launcher)
    async with anyio.create_task_group() as tg:
        await tg.start(router.run)
        try:
            yield router, launcher
        finally:
            launcher.open_all_gates()
            with anyio.fail_after(10):
                await router.shutdown(1)


class Watch:
    """Collects bus events from now on; await one that matches."""

    def __init__(self, router: RouterActor) -> None:
        self.events: list[Any] = []
        self._changed = anyio.Event()
        router.bus.add_listener(self._on_event)

    def _on_event(self, event: Any) -> None:
        self.events.append(event)
        self._changed.set()
        self._changed = anyio.Event()

    async def until(self, predicate: Callable[[Any], bool], limit: float = 5.0) -> Any:
        with anyio.fail_after(limit):
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                await self._changed.wait()


async def until_spawned(launcher: GatedLauncher, model: str, count: int = 1) -> None:
    with anyio.fail_after(5):
        while launcher.starts[model] < count:
            await launcher.spawned.wait()
