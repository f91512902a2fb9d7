"""Watching config sources for changes: a cheap stat poll, as llama-swap does (§1.12).

Polling (every 2 s by default) needs no extra dependency, works on every filesystem
(including bind mounts and network shares where inotify is silent) and follows
editors that save by replacing the file. Rules: the file fires on an mtime, size or
inode change and when it appears; a file that disappears is ignored (it is usually
being rewritten); the directory fires when its set of YAML files or any of their
stats changes, ignoring moments when it is missing or has no YAML files.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.to_thread

from llamaswap.config.errors import ConfigError
from llamaswap.config.loader import StrPath, reload_config
from llamaswap.config.models import Config
from llamaswap.config.sources import list_dir_sources

FileStat = tuple[int, int, int]  # mtime_ns, size, inode


def _stat(path: Path) -> FileStat | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


@dataclass(frozen=True)
class Snapshot:
    file: FileStat | None = None
    directory: frozenset[tuple[str, FileStat]] | None = None

    @classmethod
    def take(cls, path: StrPath | None, config_dir: StrPath | None) -> Snapshot:
        file = _stat(Path(path)) if path is not None else None
        directory = None
        if config_dir is not None:
            try:
                entries = {(p.name, st) for p in list_dir_sources(config_dir) if (st := _stat(p))}
            except OSError:
                entries = set()
            directory = frozenset(entries) or None
        return cls(file, directory)

    def advance(self, new: Snapshot) -> tuple[bool, Snapshot]:
        """(did the sources change, the snapshot to compare against next time)."""
        changed = False
        file, directory = self.file, self.directory
        if new.file is not None and new.file != self.file:
            changed, file = True, new.file
        if new.directory is not None and new.directory != self.directory:
            changed, directory = True, new.directory
        return changed, Snapshot(file, directory)


def watch_config(
    path: StrPath | None,
    config_dir: StrPath | None = None,
    *,
    interval: float = 2.0,
    environ: Mapping[str, str] | None = None,
) -> AsyncGenerator[Config | ConfigError, None]:
    """Yield a freshly loaded `Config`, or the `ConfigError` refusing it, after each change.

    The sources are stat'ed when this is *called*, so a change made after the call but
    before the first `anext()` is still seen. Loading runs in a worker thread; bad
    content never raises here. Use as `async for new in watch_config(...)`.
    """
    if path is None and config_dir is None:
        raise ValueError("watch_config needs a config path or a config dir")
    env = None if environ is None else dict(environ)
    return _watch(Snapshot.take(path, config_dir), path, config_dir, interval, env)


async def _watch(
    state: Snapshot,
    path: StrPath | None,
    config_dir: StrPath | None,
    interval: float,
    environ: Mapping[str, str] | None,
) -> AsyncGenerator[Config | ConfigError, None]:
    load = functools.partial(reload_config, path, config_dir, environ)
    while True:
        await anyio.sleep(interval)
        changed, state = state.advance(Snapshot.take(path, config_dir))
        if changed:
            yield await anyio.to_thread.run_sync(load)
