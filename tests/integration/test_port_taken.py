"""A model's port held by another process: a failed start that names the holder, never
the other process's 200 taken for the model's health (issue 13)."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from llamaswap.runtime.launcher import SubprocessLauncher
from llamaswap.runtime.logs import LogRing
from llamaswap.runtime.portcheck import PortInUse
from llamaswap.runtime.process import StartFailed
from llamaswap.testing import upstream_command

from .helpers import fake_cmd, fake_settings, free_port, running_actor
from .server import running_server

pytestmark = pytest.mark.anyio


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@contextmanager
def held(port: int, argv: list[str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Another process listening on `port`: by default the fake upstream as model "other"."""
    process = subprocess.Popen(
        argv or upstream_command(port, "--silent", "--model", "other"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 15
        while not listening(port):  # another process: no event to await
            assert process.poll() is None and time.monotonic() < deadline, "holder did not start"
            time.sleep(0.02)
        yield process
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


async def test_a_port_held_by_another_process_fails_the_start_naming_it() -> None:
    port = free_port()
    settings = fake_settings(cmd=fake_cmd(port), proxy=f"http://127.0.0.1:{port}")
    with held(port) as other:
        async with running_actor(settings) as (actor, log):
            with pytest.raises(StartFailed) as failure:
                await actor.ensure_ready()
            assert log.path == [("stopped", "launching"), ("launching", "failed")]
            assert actor.state == "failed" and f"port {port}" in actor.fault
    message = str(failure.value)
    assert f"port {port} on 127.0.0.1 is already in use by pid {other.pid} (" in message
    assert "llamaswap.testing.upstream" in message


async def test_localhost_proxy_sees_a_holder_on_the_wildcard_address() -> None:
    port = free_port()
    script = f"import socket, time; s = socket.create_server(('0.0.0.0', {port})); time.sleep(60)"
    with held(port, [sys.executable, "-c", script]):
        settings = fake_settings(cmd=fake_cmd(port), proxy=f"http://localhost:{port}")
        async with running_actor(settings) as (actor, _):
            with pytest.raises(StartFailed, match=f"port {port} on localhost is already in use"):
                await actor.ensure_ready()


async def test_two_models_on_one_fixed_port_never_answer_for_each_other() -> None:
    port = free_port()
    models = "".join(
        f"  {name}:\n    cmd: {shlex.join(upstream_command(port, '--silent', '--model', name))}\n"
        f"    proxy: http://127.0.0.1:{port}\n"
        for name in ("a", "b")
    )
    yaml = f"groups:\n  both: {{swap: false, members: [a, b]}}\nmodels:\n{models}"
    async with running_server(yaml) as server, server.client() as http:
        async with http.post(f"{server.url}/api/models/load/a") as response:
            assert response.status == 200
        async with http.post(f"{server.url}/api/models/load/b") as response:
            body = await response.text()
            assert response.status != 200, body
        assert f"port {port} on 127.0.0.1 is already in use by pid" in body
        async with http.get(f"{server.url}/running") as response:
            running = {
                entry["model"]: entry["state"] for entry in (await response.json())["running"]
            }
        assert running == {"a": "ready", "b": "failed"}  # b shows why it is not running


async def test_the_launcher_refuses_a_taken_port_before_spawning() -> None:
    """The spawn-time check (for a process actor that passes the model's proxy)."""
    port = free_port()
    with held(port) as other, pytest.raises(PortInUse) as failure:
        SubprocessLauncher().spawn(
            ["sleep", "60"], {}, LogRing("m"), proxy=f"http://127.0.0.1:{port}/"
        )
    assert isinstance(failure.value, OSError)
    assert failure.value.held_by[0][0] == other.pid
    assert f"port {port} on 127.0.0.1" in (failure.value.strerror or "")
