"""Fixtures for llamaswap against a real ``llama-server`` (see docs/e2e.md).

* ``binary``: the cached ``llama-server``; every test using it skips when it is not built.
* ``tiny_models``: three tiny GGUF models (m1, m2, m3: different seeds and training
  contexts), written once per session into a temporary directory.
* ``llamaswap_yaml(...)``: a llamaswap config serving such models with llama-server.
* ``our_servers(...)``: the live llama-server processes started on *our* model files,
  found through ``/proc``. The ``no_leftovers`` fixture kills any of them before and
  after a test, and fails the teardown of a test that left one behind.

Nothing here needs pytest except the fixtures, so ``benchmarks/real_readiness.py``
imports the helpers too.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from tests.integration.server import free_port_block

from . import kit

# id -> (seed, n_ctx_train of the file, -c given to llama-server)
MODEL_SPECS: dict[str, tuple[int, int, int]] = {
    "m1": (11, 2048, 256),
    "m2": (22, 4096, 512),
    "m3": (33, 1024, 768),
}


@dataclass(frozen=True)
class TinyModels:
    """The session's model files: ``paths[id]`` and the directory they live in."""

    directory: Path
    paths: dict[str, Path]

    def ctx(self, model_id: str) -> int:
        return MODEL_SPECS[model_id][2]


@dataclass(frozen=True)
class LlamaModel:
    """One ``models.<id>`` entry served by llama-server."""

    id: str
    path: Path
    ctx: int = 256
    args: Sequence[str] = ()  # more llama-server flags, e.g. ("--context-shift",)
    extra: Mapping[str, Any] = field(default_factory=dict)  # more YAML keys: ttl, ...


def write_models(directory: Path) -> TinyModels:
    specs = [
        kit.TinyModel(name, seed=seed, n_ctx_train=n_ctx_train)
        for name, (seed, n_ctx_train, _ctx) in MODEL_SPECS.items()
    ]
    paths = kit.make_models(directory, specs)
    return TinyModels(directory, {path.stem: path for path in paths})


def llama_model(models: TinyModels, model_id: str, *args: str, **extra: Any) -> LlamaModel:
    """``LlamaModel`` for one of the session's models, with its own ``-c``."""
    return LlamaModel(model_id, models.paths[model_id], models.ctx(model_id), args, extra)


def model_command(binary: Path, model: LlamaModel) -> str:
    argv = [
        os.fspath(binary),
        "--threads",
        "1",
        "-c",
        str(model.ctx),
        "--host",
        "127.0.0.1",
        "--port",
        "${PORT}",
        "-m",
        os.fspath(model.path),
        "--alias",
        model.id,
        *model.args,
    ]
    return " ".join(argv)  # split with POSIX quoting by llamaswap; our paths have no spaces


def llamaswap_yaml(
    binary: Path,
    models: Iterable[LlamaModel],
    top: Mapping[str, Any] | None = None,
    *,
    start_port: int | None = None,
) -> str:
    """A llamaswap config for these llama-server models (``top``: more top-level keys)."""
    chosen = list(models)
    assert all(" " not in os.fspath(m.path) for m in chosen), "model paths must not have spaces"
    document: dict[str, Any] = {
        "startPort": start_port or free_port_block(len(chosen)),
        "healthCheckTimeout": 30,
        **(top or {}),
        "models": {
            model.id: {
                "cmd": model_command(binary, model),
                "proxy": "http://127.0.0.1:${PORT}",
                "checkEndpoint": "/health",
                **model.extra,
            }
            for model in chosen
        },
    }
    return yaml.safe_dump(document, sort_keys=False)


# --- our llama-server processes, found through /proc ---------------------------------


def our_servers(directory: Path) -> dict[int, str]:
    """Live (non-zombie) processes whose command line uses a file in ``directory``:
    pid -> model id (the file's stem)."""
    marker = os.fspath(directory).encode() + b"/"
    found: dict[int, str] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as file:
                argv = file.read().split(b"\0")
            with open(f"/proc/{entry.name}/stat", "rb") as file:
                state = file.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if state in (b"Z", b"X"):
            continue
        for arg in argv:
            if arg.startswith(marker) and arg.endswith(b".gguf"):
                found[int(entry.name)] = Path(arg.decode()).stem
                break
    return found


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as file:
        return int(file.read().rsplit(b")", 1)[1].split()[1])


def kill_ours(directory: Path) -> dict[int, str]:
    """SIGKILL every process of ours (their whole group when they lead one)."""
    found = our_servers(directory)
    for pid in found:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
    wait_gone_sync(found, 5.0)
    return found


def wait_gone_sync(pids: Iterable[int], within: float) -> list[int]:
    """Wait (pidfd, no polling) until these processes have exited; return the survivors."""
    deadline = time.monotonic() + within
    survivors = []
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            if not poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
                survivors.append(pid)
        finally:
            os.close(fd)
    return survivors


async def wait_gone(pids: Iterable[int], within: float) -> None:
    """Return once these processes have exited; TimeoutError after ``within`` seconds."""
    with anyio.fail_after(within):
        for pid in pids:
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            try:
                await anyio.wait_readable(fd)
            finally:
                os.close(fd)


# --- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def binary() -> Path:
    found = kit.llama_server_binary()
    if found is None:
        pytest.skip("llama-server not built: run `make e2e-build`")
    return found


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    pytest.importorskip("gguf", reason="needs the 'gguf' package (pip install -e '.[e2e]')")
    return write_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session", autouse=True)
def _no_llama_arg_overrides() -> Iterator[None]:
    """llamaswap hands its environment to llama-server: no LLAMA_ARG_* may override
    the flags of our commands."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("LLAMA_ARG_"):
                patch.delenv(name)
        yield


@pytest.fixture
def no_leftovers(tiny_models: TinyModels) -> Iterator[TinyModels]:
    """Kills leftovers of earlier tests first; after the test, kills what it left behind
    and fails its teardown, since every test must end with no llama-server of ours."""
    kill_ours(tiny_models.directory)
    yield tiny_models
    left = kill_ours(tiny_models.directory)
    if left:
        pytest.fail(f"llama-server processes left running after the test: {left}")
