"""§1.12 reload: the stat poll's rules, and the watcher yielding configs or errors."""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator
from contextlib import aclosing
from pathlib import Path

import anyio
import pytest

from llamaswap.config import Config, ConfigError, reload_config, watch_config
from llamaswap.config.watch import Snapshot

MODEL = "models:\n  m: {cmd: srv, proxy: 'http://h:1', ttl: %d}\n"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# ---- the change rules, on snapshots -----------------------------------------------------


def stat(mtime: int, size: int = 10, inode: int = 1) -> tuple[int, int, int]:
    return (mtime, size, inode)


@pytest.mark.parametrize(
    ("old", "new", "fires", "kept"),
    [
        (Snapshot(stat(1)), Snapshot(stat(1)), False, Snapshot(stat(1))),
        (Snapshot(stat(1)), Snapshot(stat(2)), True, Snapshot(stat(2))),  # mtime
        (Snapshot(stat(1, 10)), Snapshot(stat(1, 11)), True, Snapshot(stat(1, 11))),  # size
        (Snapshot(stat(1, 10, 1)), Snapshot(stat(1, 10, 2)), True, Snapshot(stat(1, 10, 2))),
        (Snapshot(None), Snapshot(stat(1)), True, Snapshot(stat(1))),  # missing -> present
        (Snapshot(stat(1)), Snapshot(None), False, Snapshot(stat(1))),  # present -> missing
        (
            Snapshot(None, frozenset({("a.yaml", stat(1))})),
            Snapshot(None, frozenset({("a.yaml", stat(1)), ("b.yaml", stat(1))})),
            True,
            Snapshot(None, frozenset({("a.yaml", stat(1)), ("b.yaml", stat(1))})),
        ),
        (
            Snapshot(None, frozenset({("a.yaml", stat(1))})),
            Snapshot(None, None),  # dir missing or without YAML files: ignored
            False,
            Snapshot(None, frozenset({("a.yaml", stat(1))})),
        ),
        (
            Snapshot(None, frozenset({("a.yaml", stat(1)), ("b.yaml", stat(1))})),
            Snapshot(None, frozenset({("a.yaml", stat(1))})),  # a file removed
            True,
            Snapshot(None, frozenset({("a.yaml", stat(1))})),
        ),
    ],
)
def test_change_rules(old: Snapshot, new: Snapshot, fires: bool, kept: Snapshot) -> None:
    assert old.advance(new) == (fires, kept)


def test_snapshot_of_a_dir_sees_only_top_level_yaml(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("a: 1")
    (tmp_path / "b.txt").write_text("b")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yaml").write_text("c: 1")
    snapshot = Snapshot.take(None, tmp_path)
    assert snapshot.directory is not None
    assert {name for name, _ in snapshot.directory} == {"a.yaml"}
    assert Snapshot.take(None, tmp_path / "missing").directory is None


# ---- the watcher --------------------------------------------------------------------


async def next_item(gen: AsyncGenerator[Config | ConfigError, None]) -> Config | ConfigError:
    with anyio.fail_after(5):
        return await anext(gen)


@pytest.mark.anyio
async def test_watcher_yields_new_config_then_errors_then_recovers(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(MODEL % 1)
    async with aclosing(watch_config(path, interval=0.01, environ={})) as gen:
        path.write_text(MODEL % 1234)
        first = await next_item(gen)
        assert isinstance(first, Config)
        assert first.models["m"].ttl == 1234

        path.write_text(MODEL % -7)
        second = await next_item(gen)
        assert isinstance(second, ConfigError)
        assert "invalid TTL value -7" in str(second)

        path.write_text(MODEL % 42)
        third = await next_item(gen)
        assert isinstance(third, Config) and third.models["m"].ttl == 42


@pytest.mark.anyio
async def test_watcher_follows_a_config_dir(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(MODEL % 5)
    async with aclosing(watch_config(None, tmp_path, interval=0.01, environ={})) as gen:
        (tmp_path / "b.yaml").write_text("globalTTL: 77\n")
        config = await next_item(gen)
        assert isinstance(config, Config)
        assert config.global_ttl == 77
        assert len(config.sources) == 2


@pytest.mark.anyio
async def test_watcher_sees_a_file_replaced_by_rename(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(MODEL % 1)
    async with aclosing(watch_config(path, interval=0.01, environ={})) as gen:
        replacement = tmp_path / "config.yaml.tmp"
        replacement.write_text(MODEL % 2)
        os.replace(replacement, path)  # what editors do on save
        config = await next_item(gen)
        assert isinstance(config, Config) and config.models["m"].ttl == 2


def test_watch_config_needs_a_source() -> None:
    with pytest.raises(ValueError, match="config path or a config dir"):
        watch_config(None, None)


def test_reload_config_returns_errors_instead_of_raising(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("globalTTL: -1\n")
    result = reload_config(path, None, {})
    assert isinstance(result, ConfigError)
    assert result.problems[0].path == "globalTTL"
    path.write_text("globalTTL: 5\n")
    result = reload_config(path, None, {})
    assert isinstance(result, Config) and result.global_ttl == 5
