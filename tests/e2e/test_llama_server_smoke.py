"""Smoke test: the kit can run a real llama-server on a generated model.

Skips when ``llama-server`` is not built (``bash scripts/build-llama-server.sh``) or
the ``gguf`` package is missing.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import kit

ALIAS = "tiny-smoke"


@pytest.fixture(scope="module")
def binary() -> Path:
    found = kit.llama_server_binary()
    if found is None:
        pytest.skip("llama-server not built: run `bash scripts/build-llama-server.sh`")
    return found


@pytest.fixture(scope="module")
def gguf_installed() -> None:
    pytest.importorskip("gguf", reason="needs the 'gguf' package")


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _post(url: str, body: dict[str, Any]) -> urllib.request.Request:
    return urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )


def _log_tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture
def server(binary: Path, gguf_installed: None, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A running llama-server: yields (base URL, log file); always stops the group."""
    (model,) = kit.make_models(tmp_path, ["smoke"])
    port = kit.free_port()
    log = tmp_path / "llama-server.log"
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            kit.llama_server_argv(binary, model, port, ctx=256, alias=ALIAS),
            env=kit.llama_server_env(),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30.0
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama-server exited with {proc.returncode}:\n{_log_tail(log)}")
            try:
                status, _ = _get(f"{base}/health")
            except OSError:
                status = 0
            if status == 200:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"llama-server not healthy after 30 s:\n{_log_tail(log)}")
            time.sleep(0.02)
        yield base, log
        # Idle SIGTERM exits 0; -15 is possible only right after /health turned 200.
        code = kit.stop_process_group(proc, timeout=10.0)
        assert code in (0, -signal.SIGTERM), f"exit {code}:\n{_log_tail(log)}"
    finally:
        kit.stop_process_group(proc, timeout=2.0)


def test_tiny_models_are_small_and_deterministic(gguf_installed: None, tmp_path: Path) -> None:
    def digests(directory: Path) -> list[str]:
        paths = kit.make_models(directory, ["a", "b"])
        assert all(path.stat().st_size < 1_000_000 for path in paths)
        return [hashlib.sha256(path.read_bytes()).hexdigest() for path in paths]

    first = digests(tmp_path / "first")
    assert digests(tmp_path / "second") == first  # same specs: byte-identical files
    assert first[0] != first[1]  # different seeds (and names)


def test_models_endpoint(server: tuple[str, Path]) -> None:
    base, _ = server
    status, body = _get(f"{base}/v1/models")
    assert status == 200
    listing = json.loads(body)
    assert listing["object"] == "list"
    assert [entry["id"] for entry in listing["data"]] == [ALIAS]


def test_chat_completion(server: tuple[str, Path]) -> None:
    base, _ = server
    request = _post(
        f"{base}/v1/chat/completions",
        {
            "model": "ignored-by-llama-server",
            "messages": [{"role": "user", "content": "hello model"}],
            "max_tokens": 16,
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        reply = json.loads(response.read())
    assert reply["object"] == "chat.completion"
    assert reply["model"] == ALIAS
    choice = reply["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"]
    assert choice["finish_reason"] in ("length", "stop")
    assert 0 < reply["usage"]["completion_tokens"] <= 16


def test_streaming_chat_completion(server: tuple[str, Path]) -> None:
    base, _ = server
    request = _post(
        f"{base}/v1/chat/completions",
        {
            "messages": [{"role": "user", "content": "stream a reply"}],
            "max_tokens": 16,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    events: list[str] = []
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        assert response.headers.get_content_type() == "text/event-stream"
        for raw in response:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("data: "):
                events.append(line.removeprefix("data: "))
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    text = "".join(
        choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"]
    )
    assert text
    finishes = [c["finish_reason"] for chunk in chunks for c in chunk["choices"]]
    assert finishes[-1] in ("length", "stop")
    usage = [chunk for chunk in chunks if chunk.get("usage") and not chunk["choices"]]
    assert usage and 0 < usage[-1]["usage"]["completion_tokens"] <= 16
