"""Helpers for end-to-end tests against a real llama.cpp ``llama-server``.

No pytest dependency, so benchmarks and ad-hoc scripts can use it too. The pieces:

* ``llama_server_binary()`` finds ``llama-server``, built by
  ``scripts/build-llama-server.sh`` into ``$LLAMASWAP_E2E_CACHE/bin`` (default
  ``~/.cache/llamaswap-e2e``). ``LLAMASWAP_LLAMA_SERVER=/path`` points at another
  binary; ``LLAMASWAP_E2E_BUILD=1`` runs the build script (~5 min on 2 cores) when
  nothing is cached. Otherwise it returns None and the caller should skip.
* ``make_models(dir, specs)`` writes tiny random-weight GGUF models (~0.8 MB each,
  about 0.3 s) with ``make_tiny_gguf``; each model gets its own seed.
* ``llama_server_argv(...)`` gives the command line (always ``--host 127.0.0.1``);
  ``llama_server_env()`` the environment to run it with.
* ``free_port()`` and ``stop_process_group()`` for running it.

Pitfalls of the real server (llama.cpp 0.5.0-dev, commit 0c1e570):

1. SIGTERM is ignored while a request is in flight, streaming or not: the main loop
   stops ("cleaning up before exit..."), but the HTTP thread waiting for results
   blocks the join, and the client's stream just stalls with no ``[DONE]`` and no
   error. A second SIGTERM/SIGINT exits at once (rc 1); SIGKILL works too. A swapping
   proxy needs SIGTERM, a grace period, then SIGKILL, and must end the client streams
   itself.
2. SIGTERM right after ``/health`` turns 200 can kill it with rc -15, because the HTTP
   server is up before the signal handler is installed. That is not a crash. Idle, it
   exits rc 0 within ~10 ms.
3. ``LLAMA_ARG_*`` environment variables override command-line flags (``LLAMA_ARG_PORT``,
   ``LLAMA_ARG_HOST``, ``LLAMA_ARG_MODEL`` ...). ``llama_server_env()`` strips them.
4. Prompt caching is on: a repeated prompt reports ``usage.prompt_tokens_details.
   cached_tokens`` and runs faster. Vary prompts or send ``"cache_prompt": false``
   when timing.
5. ``-c`` is the context per slot; ``-np`` defaults to 4 slots. A prompt longer than
   that gets a 400 ``exceed_context_size_error``.
6. ``/health`` answers 503 while the model loads, then 200 ``{"status":"ok"}``;
   ``/v1/models`` lists the file name as id, or ``--alias``. The ``model`` field of a
   request is ignored and the response echoes the server's own id.
7. The tiny model practically never emits EOS: completions run to ``max_tokens``
   (``finish_reason: "length"``) unless a ``stop`` string such as ``" the"`` is sent.
   It is also very fast (~10k tok/s); use bigger ``TinyModel`` sizes for slower ones.
8. Threads: by default llama-server uses every core and its OpenMP workers spin.
   With other work on the machine (parallel tests, several upstreams at once) a
   64-token request measured 0.7-8 s instead of ~40 ms. ``llama_server_argv`` passes
   ``--threads 1`` unless told otherwise.
9. The build has no web UI (``GET /`` is a 404); the API is complete.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from llamaswap.testing.ports import free_port as free_port  # re-exported for the tests

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-llama-server.sh"


def cache_dir() -> Path:
    """Where the build script keeps the sources, the build tree and ``bin/``."""
    configured = os.environ.get("LLAMASWAP_E2E_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "llamaswap-e2e"


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def llama_server_binary() -> Path | None:
    """The ``llama-server`` to test against, or None when there is none.

    Order: ``$LLAMASWAP_LLAMA_SERVER``; the cached build; a build now when
    ``LLAMASWAP_E2E_BUILD=1`` (raises if that build fails).
    """
    explicit = os.environ.get("LLAMASWAP_LLAMA_SERVER")
    if explicit:
        path = Path(explicit)
        return path if _executable(path) else None
    cached = cache_dir() / "bin" / "llama-server"
    if _executable(cached):
        return cached
    if os.environ.get("LLAMASWAP_E2E_BUILD") == "1":
        result = subprocess.run(
            ["bash", str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True
        )
        built = Path(result.stdout.strip().splitlines()[-1])
        return built if _executable(built) else None
    return None


@dataclass(frozen=True)
class TinyModel:
    """One model for ``make_models``; the sizes are ``make_tiny_gguf``'s options."""

    name: str
    seed: int | None = None  # None: derived from the position in the list
    n_ctx_train: int = 4096
    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 4
    n_ff: int = 128
    f16: bool = False


def make_models(directory: str | os.PathLike[str], specs: Iterable[TinyModel | str]) -> list[Path]:
    """Write ``<name>.gguf`` into ``directory`` for each spec and return the paths.

    A plain string is a ``TinyModel`` with that name and default sizes. Models
    without a seed get ``1000 + index``, so every model in one call differs.
    Needs the ``gguf`` package (``ImportError`` otherwise).
    """
    from .make_tiny_gguf import write_tiny_gguf

    out_dir = Path(directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for index, spec in enumerate(specs):
        model = TinyModel(spec) if isinstance(spec, str) else spec
        path = out_dir / f"{model.name}.gguf"
        write_tiny_gguf(
            path,
            seed=1000 + index if model.seed is None else model.seed,
            n_ctx_train=model.n_ctx_train,
            n_layer=model.n_layer,
            n_embd=model.n_embd,
            n_head=model.n_head,
            n_ff=model.n_ff,
            f16=model.f16,
            name=model.name,
        )
        paths.append(path)
    return paths


def llama_server_argv(
    binary: str | os.PathLike[str],
    model: str | os.PathLike[str],
    port: int,
    ctx: int = 256,
    alias: str | None = None,
    *,
    threads: int | None = 1,
) -> list[str]:
    """The command line for ``llama-server`` serving ``model`` on 127.0.0.1:``port``.

    ``threads=1`` by default: with llama.cpp's default (all cores, OpenMP spin-waits)
    a loaded test machine turns 40 ms requests into seconds. ``None`` keeps the
    server's default.
    """
    argv = [
        os.fspath(binary),
        "--model",
        os.fspath(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--ctx-size",
        str(ctx),
    ]
    if alias is not None:
        argv += ["--alias", alias]
    if threads is not None:
        argv += ["--threads", str(threads)]
    return argv


def llama_server_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default ``os.environ``) without the ``LLAMA_ARG_*`` overrides."""
    source = os.environ if base is None else base
    return {key: value for key, value in source.items() if not key.startswith("LLAMA_ARG_")}


def stop_process_group(
    proc: subprocess.Popen[bytes] | subprocess.Popen[str],
    timeout: float = 10.0,
    signals: Sequence[signal.Signals] = (signal.SIGTERM,),
) -> int:
    """Signal the process group of ``proc`` (started with ``start_new_session=True``).

    Sends each of ``signals`` in turn, waiting up to ``timeout`` seconds after each,
    then SIGKILLs the group. Returns the exit status of ``proc``.
    """
    for sig in (*signals, signal.SIGKILL):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            continue
    # Stragglers in the group (none expected for llama-server) go too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait()
