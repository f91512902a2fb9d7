"""Watching config sources for changes: a cheap stat poll, as llama-swap does (§1.12).

Polling (every 2 s by default) needs no extra dependency, works on every filesystem
(including bind mounts and network shares where inotify is silent) and follows
editors that save by replacing the file. Rules: the file fires on an mtime, size or
inode change and when it appears; a file that disappears is ignored (it is usually
being rewritten); the directory fires when its set of YAML files or any of their
stats changes, ignoring moments when it is missing or has no YAML files.

Editors that save in place truncate the file, then write it. Loading in between would
apply an empty config and unload every model (W1). So a change is loaded only once the
sources have been quiet for `quiet` seconds, and a config without models, when the last
one had some (or we do not know yet), is applied only if the sources then stay as they
are for `confirm_empty` seconds more: a file that is really meant to be empty.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.to_thread

from llamaswap.config.errors import ConfigError
from llamaswap.config.loader import StrPath, reload_config
from llamaswap.config.models import Config
from llamaswap.config.sources import list_dir_sources

log = logging.getLogger("llamaswap.config")

FileStat = tuple[int, int, int]  # mtime_ns, size, inode
QUIET_SECONDS = 0.4
CONFIRM_EMPTY_SECONDS = 2.0


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
    quiet: float = QUIET_SECONDS,
    confirm_empty: float = CONFIRM_EMPTY_SECONDS,
    environ: Mapping[str, str] | None = None,
) -> AsyncGenerator[Config | ConfigError, None]:
    """Yield a freshly loaded `Config`, or the `ConfigError` refusing it, after each change.

    The sources are stat'ed when this is *called*, so a change made after the call but
    before the first `anext()` is still seen. A change is loaded once the sources have
    been quiet for `quiet` seconds; a config without models is held back until they have
    stayed unchanged `confirm_empty` seconds longer (see the module docstring). Loading
    runs in a worker thread; bad content never raises here. Use as
    `async for new in watch_config(...)`.
    """
    if path is None and config_dir is None:
        raise ValueError("watch_config needs a config path or a config dir")
    env = None if environ is None else dict(environ)
    watcher = _Watcher(path, config_dir, env, quiet, confirm_empty)
    return watcher.run(Snapshot.take(path, config_dir), interval)


class _Watcher:
    def __init__(
        self,
        path: StrPath | None,
        config_dir: StrPath | None,
        environ: Mapping[str, str] | None,
        quiet: float,
        confirm_empty: float,
    ) -> None:
        self._take: Callable[[], Snapshot] = functools.partial(Snapshot.take, path, config_dir)
        self._load = functools.partial(reload_config, path, config_dir, environ)
        self._quiet = quiet
        self._confirm_empty = confirm_empty
        self._had_models = True  # what is running is unknown: assume the worst case

    async def run(
        self, state: Snapshot, interval: float
    ) -> AsyncGenerator[Config | ConfigError, None]:
        while True:
            await anyio.sleep(interval)
            changed, state = state.advance(self._take())
            while changed:
                changed, state = await self._quiet_for(state, self._quiet)
                if changed:
                    continue
                loaded = await anyio.to_thread.run_sync(self._load)
                if self._held_back(loaded):
                    changed, state = await self._quiet_for(state, self._confirm_empty)
                    if changed:
                        log.info("config files changed again: loading them once they settle")
                        continue
                    log.warning(
                        "config still has no models after %gs: applying it, which unloads "
                        "every model",
                        self._quiet + self._confirm_empty,
                    )
                if isinstance(loaded, Config):
                    self._had_models = bool(loaded.models)
                yield loaded

    def _held_back(self, loaded: Config | ConfigError) -> bool:
        """A config that would unload every model: wait to see whether it stays so."""
        if not isinstance(loaded, Config) or loaded.models or not self._had_models:
            return False
        log.warning(
            "config files now define no models (an editor truncating the file?): not "
            "applied unless they stay this way for %gs",
            self._confirm_empty,
        )
        return True

    async def _quiet_for(self, state: Snapshot, seconds: float) -> tuple[bool, Snapshot]:
        """Poll for `seconds`: (False, state) if the sources stayed unchanged throughout,
        else (True, the newest state) as soon as they change."""
        step = min(seconds / 4, 0.1) if seconds > 0 else 0.0
        deadline = anyio.current_time() + seconds
        while anyio.current_time() < deadline:
            await anyio.sleep(step)
            changed, state = state.advance(self._take())
            if changed:
                return True, state
        return False, state
