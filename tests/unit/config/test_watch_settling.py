"""W1: a watched config is loaded once it has settled, and an empty one only if it stays
empty. Real files, real stat polling; the pauses below are the editor's, not waits."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from pathlib import Path

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream

from llamaswap.config import Config, ConfigError, watch_config

TWO_MODELS = "models:\n  a: {cmd: srv, proxy: 'http://h:1'}\n  b: {cmd: srv, proxy: 'http://h:2'}\n"
ONE_MODEL = "models:\n  a: {cmd: srv, proxy: 'http://h:1'}\n"
POLL, QUIET, CONFIRM = 0.02, 0.25, 0.75

Loaded = Config | ConfigError
Watch = MemoryObjectReceiveStream[Loaded]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def watching(path: Path) -> AsyncIterator[Watch]:
    """The watcher running in the background (a generator only runs while iterated),
    its results delivered in order."""
    send, receive = anyio.create_memory_object_stream[Loaded](100)
    gen = watch_config(path, interval=POLL, quiet=QUIET, confirm_empty=CONFIRM, environ={})

    async def pump() -> None:
        async with aclosing(gen), send:
            async for loaded in gen:
                await send.send(loaded)

    async with anyio.create_task_group() as tg:
        tg.start_soon(pump)
        try:
            yield receive
        finally:
            tg.cancel_scope.cancel()


async def next_config(watch: Watch, within: float = 5.0) -> Config:
    with anyio.fail_after(within):
        loaded = await watch.receive()
    assert isinstance(loaded, Config), loaded
    return loaded


def truncate(path: Path) -> None:
    with path.open("w"):
        pass


def rewrite_in_place(path: Path, text: str) -> None:
    with path.open("r+") as file:  # what an editor saving in place does: no new inode
        file.truncate(0)
        file.write(text)


@pytest.mark.anyio
async def test_truncate_then_write_is_one_reload_of_the_new_content(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(ONE_MODEL)
    async with watching(path) as watch:
        truncate(path)
        await anyio.sleep(QUIET / 3)  # the editor writes a moment later
        rewrite_in_place(path, TWO_MODELS)
        config = await next_config(watch)
        assert sorted(config.models) == ["a", "b"]


@pytest.mark.anyio
async def test_a_file_left_empty_for_a_while_is_not_applied_if_it_fills_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(ONE_MODEL)
    caplog.set_level(logging.INFO, "llamaswap.config")
    async with watching(path) as watch:
        truncate(path)
        await anyio.sleep(QUIET + CONFIRM / 3)  # longer than the quiet period: loaded, held
        rewrite_in_place(path, TWO_MODELS)
        config = await next_config(watch)
        assert sorted(config.models) == ["a", "b"]
    assert "now define no models" in caplog.text
    assert "changed again" in caplog.text
    assert "applying it" not in caplog.text


@pytest.mark.anyio
async def test_a_file_that_stays_empty_is_applied_and_said_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(ONE_MODEL)
    caplog.set_level(logging.INFO, "llamaswap.config")
    async with watching(path) as watch:
        started = anyio.current_time()
        truncate(path)
        config = await next_config(watch)
        assert config.models == {}
        assert anyio.current_time() - started >= QUIET + CONFIRM
        # Now nothing runs: the next empty-to-something change needs no confirmation.
        path.write_text(ONE_MODEL)
        assert list((await next_config(watch, within=QUIET + 1.0)).models) == ["a"]
    assert "still has no models after 1s: applying it, which unloads every model" in caplog.text


@pytest.mark.anyio
async def test_a_burst_of_writes_is_one_reload(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(ONE_MODEL)
    async with watching(path) as watch:
        for ttl in range(1, 6):  # a tool writing the file repeatedly
            path.write_text(TWO_MODELS.replace("'http://h:2'}", f"'http://h:2', ttl: {ttl}}}"))
            await anyio.sleep(QUIET / 5)
        config = await next_config(watch)
        assert config.models["b"].ttl == 5
