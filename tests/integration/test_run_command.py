"""`llamaswap run` as users start it: a subprocess, signals, reloads, exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .helpers import pid_alive
from .server import config_yaml, fake_model, free_port_block

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy


def get(url: str) -> tuple[int, str]:
    try:
        with OPENER.open(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def post_json(url: str, body: dict[str, object]) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with OPENER.open(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_for(predicate: object, timeout: float = 20.0) -> None:
    """Poll another process (no event crosses the process boundary)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@contextmanager
def llamaswap_cli(
    *argv: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    """`llamaswap ARGV`; killed with its process group at the end."""
    process = subprocess.Popen(
        [sys.executable, "-m", "llamaswap", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


@contextmanager
def llamaswap(*args: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[str]]:
    """`llamaswap run ARGS`."""
    with llamaswap_cli("run", *args, env=env) as process:
        yield process


def models_in(url: str) -> list[str]:
    status, body = get(url + "/v1/models")
    if status != 200:
        return []
    return [record["id"] for record in json.loads(body)["data"]]


def up(url: str) -> bool:
    try:
        return get(url + "/health")[0] == 200
    except OSError:
        return False


def test_the_builtin_demo_serves_and_swaps() -> None:
    port = free_port_block(1)
    url = f"http://127.0.0.1:{port}"
    with llamaswap(env={"LLAMASWAP_LISTEN": f"127.0.0.1:{port}"}) as process:
        wait_for(lambda: up(url))
        assert models_in(url) == ["embedder", "large-chat", "small-chat"]
        chat = {"model": "small-chat", "messages": [{"role": "user", "content": "hi"}]}
        status, answer = post_json(url + "/v1/chat/completions", chat)
        assert status == 200
        assert "small-chat" in json.dumps(answer)
        running = json.loads(get(url + "/running")[1])["running"]
        assert [entry["model"] for entry in running] == ["small-chat"]
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "llamaswap is running the built-in demo config" in output
    assert f"listen: {url}" in output


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
def test_sigterm_stops_every_upstream(tmp_path: Path, event_loop: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        config_yaml(
            fake_model("a"), fake_model("b"), top="groups: {g: {swap: false, members: [a, b]}}"
        )
    )
    port = free_port_block(1)
    url = f"http://127.0.0.1:{port}"
    listen = ("--listen", f"127.0.0.1:{port}")
    with llamaswap("--config", str(config), *listen, "--event-loop", event_loop) as process:
        wait_for(lambda: up(url))
        for model in ("a", "b"):
            assert post_json(url + f"/api/models/load/{model}", {})[0] == 200
        pids = upstream_pids(tmp_path, url)
        assert len(pids) == 2 and all(pid_alive(p) for p in pids)
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    assert process.returncode == 0
    assert not any(pid_alive(p) for p in pids)


def upstream_pids(tmp_path: Path, url: str) -> list[int]:
    """The fake upstreams' pids, from /proc: children of nothing we track, matched by port."""
    running = json.loads(get(url + "/running")[1])["running"]
    ports = {entry["proxy"].rsplit(":", 1)[1] for entry in running}
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [w.decode(errors="replace") for w in cmdline]
        if "llamaswap.testing.upstream" in words and any(
            words[i] == "--port" and words[i + 1] in ports for i in range(len(words) - 1)
        ):
            found.append(int(entry.name))
    return found


def test_an_invalid_config_exits_2_and_starts_nothing(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("globalTTL: -5\nmodels:\n  m:\n    cmd: x --port ${PORT}\n    ttl: -3\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "llamaswap",
            "run",
            "--config",
            str(config),
            "--listen",
            "127.0.0.1:0",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "globalTTL" in result.stderr and "models.m.ttl" in result.stderr
    assert "nothing was started" in result.stderr


def test_validate_prints_the_normalised_config(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("models:\n  m:\n    cmd: server --port ${PORT}\n    aliases: [mm]\n")
    result = subprocess.run(
        [sys.executable, "-m", "llamaswap", "run", "--config", str(config), "--validate"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "server --port 5800" in result.stdout
    assert "mm" in result.stdout


def test_sighup_reloads_and_a_bad_reload_keeps_the_running_config(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(config_yaml(fake_model("a")))
    port = free_port_block(1)
    url = f"http://127.0.0.1:{port}"
    with llamaswap("--config", str(config), "--listen", f"127.0.0.1:{port}") as process:
        wait_for(lambda: up(url))
        assert models_in(url) == ["a"]
        config.write_text(config_yaml(fake_model("a"), fake_model("b")))
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: models_in(url) == ["a", "b"])
        config.write_text("models:\n  a:\n    ttl: -7\n")
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: "config reload refused" in get(url + "/logs")[1])
        assert models_in(url) == ["a", "b"]
        assert post_json(url + "/api/models/load/b", {})[0] == 200


def test_watch_config_reloads_when_the_file_changes(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(config_yaml(fake_model("a")))
    port = free_port_block(1)
    url = f"http://127.0.0.1:{port}"
    with llamaswap("--config", str(config), "--listen", f"127.0.0.1:{port}", "--watch-config"):
        wait_for(lambda: up(url))
        config.write_text(config_yaml(fake_model("a"), fake_model("c")))
        wait_for(lambda: models_in(url) == ["a", "c"], timeout=30)


def test_a_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    port = free_port_block(1)
    url = f"http://127.0.0.1:{port}"
    with llamaswap(env={"LLAMASWAP_LISTEN": f"127.0.0.1:{port}"}):
        wait_for(lambda: up(url))
        result = subprocess.run(
            [sys.executable, "-m", "llamaswap", "run", "--listen", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_event_loop_uvloop_without_uvloop_installed_exits_2(tmp_path: Path) -> None:
    blocker = tmp_path / "uvloop.py"
    blocker.write_text("raise ImportError('not installed here')\n")
    result = subprocess.run(
        [sys.executable, "-m", "llamaswap", "run", "--event-loop", "uvloop"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert result.returncode == 2
    assert "uvloop is not installed" in result.stderr


@pytest.mark.parametrize("listen", ["nonsense", "host:notaport"])
def test_a_bad_listen_address_exits_2(listen: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "llamaswap", "run", "--listen", listen],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert f"listen address {listen!r}" in result.stderr
