"""The process actor against real upstream processes (ports llama-swap's process tests).

Every test starts the fake upstream (or a wrapper, or a broken command) as a real child
process on a free 127.0.0.1 port, and awaits state-change events instead of sleeping.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import aiohttp
import anyio
import pytest

from llamaswap.runtime import process as process_module
from llamaswap.runtime.process import ProcessActor, ProcessShutdown, StartAborted, StartFailed
from llamaswap.testing import FORK_WRAPPER

from .helpers import fake_cmd, fake_settings, free_port, kill_quietly, pid_alive, running_actor

pytestmark = pytest.mark.anyio


async def get_text(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def test_auto_start_serves_and_emits_exactly_the_spec_path() -> None:
    settings = fake_settings("m", "--respond", "hello")
    async with running_actor(settings) as (actor, log):
        await actor.ensure_ready()
        assert actor.state == "ready"
        assert await get_text(settings.proxy + "/test") == (200, "hello")
        await actor.stop()
        assert actor.state == "stopped"
    assert log.path[:5] == [
        ("stopped", "launching"),
        ("launching", "starting"),
        ("starting", "ready"),
        ("ready", "stopping"),
        ("stopping", "stopped"),
    ]
    assert all(e.model == "m" and e.at > 0 for e in log.events)


async def test_concurrent_ensure_ready_calls_join_one_start() -> None:
    async with running_actor(fake_settings()) as (actor, log):
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(actor.ensure_ready)
        assert log.path == [
            ("stopped", "launching"),
            ("launching", "starting"),
            ("starting", "ready"),
        ]
        await actor.ensure_ready()  # idempotent while ready
        assert len(log.events) == 3


async def test_a_broken_command_fails_clearly_every_time() -> None:
    settings = fake_settings(cmd="/nonexistent/llama-server --port 1")
    async with running_actor(settings) as (actor, log):
        for _ in range(2):
            with pytest.raises(StartFailed, match="failed to start command '/nonexistent"):
                await actor.ensure_ready()
            assert actor.state == "failed"
            assert actor.fault.startswith("failed to start command '/nonexistent")
        assert log.path == [
            ("stopped", "launching"),
            ("launching", "failed"),
            ("failed", "launching"),
            ("launching", "failed"),
        ]


async def test_an_empty_command_fails_with_the_reason() -> None:
    async with running_actor(fake_settings(cmd="# only a comment")) as (actor, _):
        with pytest.raises(StartFailed, match="empty command"):
            await actor.ensure_ready()


async def test_premature_exit_names_the_code_and_the_last_lines() -> None:
    async with running_actor(fake_settings("m", "--exit-after", "0")) as (actor, log):
        with pytest.raises(StartFailed) as failure:
            await actor.ensure_ready()
        message = str(failure.value)
        assert "exited prematurely with code 3" in message
        assert "exiting after" in message  # the upstream's own last words
        assert log.path == [
            ("stopped", "launching"),
            ("launching", "starting"),
            ("starting", "failed"),
        ]


async def test_health_check_timeout_kills_the_upstream() -> None:
    settings = fake_settings("m", "--never-healthy", health_check_timeout=1.0)
    async with running_actor(settings) as (actor, log):
        started = time.monotonic()
        with pytest.raises(StartFailed, match="health check timed out after 1s"):
            await actor.ensure_ready()
        assert 0.9 < time.monotonic() - started < 5
        assert log.path == [
            ("stopped", "launching"),
            ("launching", "starting"),
            ("starting", "aborting"),
            ("aborting", "failed"),
        ]
        assert actor.fault.startswith("health check timed out after 1s")


async def test_shutdown_interrupts_the_health_check() -> None:
    settings = fake_settings("m", "--never-healthy", health_check_timeout=60.0)
    async with running_actor(settings) as (actor, log):
        async with anyio.create_task_group() as tg:

            async def wait_ready() -> None:
                with pytest.raises(ProcessShutdown):
                    await actor.ensure_ready()

            tg.start_soon(wait_ready)
            await log.wait_for("starting")
            pid = await wait_for_pid(actor)
            with anyio.fail_after(5):
                await actor.shutdown(2.0)
        assert actor.state == "shutdown"
        assert not pid_alive(pid)
        with pytest.raises(ProcessShutdown):
            await actor.ensure_ready()


async def wait_for_pid(actor: ProcessActor) -> int:
    """The upstream pid, from the fake's start-up line (awaited on the live log)."""
    with actor.log.follow() as lines, anyio.fail_after(10):
        for line in actor.log.lines():
            if match := re.search(r"pid=(\d+)", line):
                return int(match.group(1))
        async for event in lines:
            if match := re.search(r"pid=(\d+)", event.text):
                return int(match.group(1))
    raise AssertionError("the upstream never printed its pid")


async def test_stop_during_start_aborts_the_start() -> None:
    settings = fake_settings("m", "--never-healthy", health_check_timeout=60.0)
    async with running_actor(settings) as (actor, log):
        async with anyio.create_task_group() as tg:

            async def wait_ready() -> None:
                with pytest.raises(StartAborted):
                    await actor.ensure_ready()

            tg.start_soon(wait_ready)
            await log.wait_for("starting")
            await actor.stop()
        assert actor.state == "stopped"
        assert log.path == [
            ("stopped", "launching"),
            ("launching", "starting"),
            ("starting", "stopping"),
            ("stopping", "stopped"),
        ]


async def test_a_sigterm_ignoring_upstream_is_killed_after_unload_timeout() -> None:
    settings = fake_settings("m", "--ignore-sigterm", unload_timeout=0.5)
    async with running_actor(settings) as (actor, _):
        await actor.ensure_ready()
        pid = actor.pid
        assert pid is not None
        started = time.monotonic()
        await actor.stop()
        assert 0.45 < time.monotonic() - started < 5
        assert not pid_alive(pid)
        assert any("SIGTERM ignored" in line for line in actor.log.lines())


async def test_stop_honours_a_graceful_shutdown_that_takes_time() -> None:
    settings = fake_settings("m", "--slow-stop", "0.6", unload_timeout=5)
    async with running_actor(settings) as (actor, _):
        await actor.ensure_ready()
        started = time.monotonic()
        await actor.stop()
        assert 0.5 < time.monotonic() - started < 4


async def test_cmd_stop_runs_with_the_pid(tmp_path: Path) -> None:
    marker = tmp_path / "stopped-pid"
    cmd_stop = f"sh -c 'echo ${{PID}} > {marker}; kill -TERM ${{PID}}'"
    async with running_actor(fake_settings(cmd_stop=cmd_stop)) as (actor, _):
        await actor.ensure_ready()
        pid = actor.pid
        await actor.stop()
        assert marker.read_text().strip() == str(pid)
        assert pid is not None and not pid_alive(pid)


async def test_a_forking_wrapper_leaves_no_grandchild_after_stop() -> None:
    port = free_port()
    cmd = f"{FORK_WRAPPER} {fake_cmd(port)}"
    settings = fake_settings(cmd=cmd, proxy=f"http://127.0.0.1:{port}")
    async with running_actor(settings) as (actor, _):
        await actor.ensure_ready()
        child = wrapper_child(actor.log.lines())
        assert pid_alive(child)
        with anyio.fail_after(5):
            await actor.stop()
        assert not pid_alive(child)


async def test_a_child_that_left_the_process_group_is_killed_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The wrapper starts the real server with setsid: signals to the group miss it."""
    monkeypatch.setenv("FORK_WRAPPER_SETSID", "1")
    port = free_port()
    cmd = f"{FORK_WRAPPER} {fake_cmd(port)}"
    settings = fake_settings(cmd=cmd, proxy=f"http://127.0.0.1:{port}")
    async with running_actor(settings) as (actor, _):
        await actor.ensure_ready()
        child = wrapper_child(actor.log.lines())
        assert os.getpgid(child) != actor.pid, "the server left the wrapper's group"
        with anyio.fail_after(5):
            await actor.stop()
        assert not pid_alive(child)


async def test_a_daemon_that_left_group_and_tree_dies_with_its_failed_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A classic daemon (setsid, then its parent exits) is in neither the process group
    nor the process tree when llamaswap looks; it still carries its upstream's mark."""
    port = free_port()
    daemon = fake_cmd(port, "--never-healthy")
    cmd = f"sh -c 'setsid {daemon} & sleep 1'"  # the wrapper exits once the daemon runs
    settings = fake_settings(cmd=cmd, proxy=f"http://127.0.0.1:{port}")
    try:
        async with running_actor(settings) as (actor, _):
            with pytest.raises(StartFailed, match="exited prematurely with code 0"):
                await actor.ensure_ready()
            assert "which had left its process group" in caplog.text
            assert fake_upstreams_on(port) == []
    finally:
        for pid in fake_upstreams_on(port):
            kill_quietly(pid)


def fake_upstreams_on(port: int) -> list[int]:
    """Live fake upstreams started with `--port <port>`, found by command line."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or not pid_alive(int(entry.name)):
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"llamaswap.testing.upstream" in argv and str(port).encode() in argv:
            found.append(int(entry.name))
    return found


def wrapper_child(lines: list[str]) -> int:
    for line in lines:
        if match := re.search(r"wrapper child pid (\d+)", line):
            return int(match.group(1))
    raise AssertionError(f"no child pid in {lines}")


async def test_environment_is_ours_plus_the_model_env() -> None:
    settings = fake_settings(env=("LLAMASWAP_TEST_VAR=from-config", "HOME=/override"))
    async with running_actor(settings) as (actor, _):
        await actor.ensure_ready()
        _, body = await get_text(settings.proxy + "/env")
        assert "LLAMASWAP_TEST_VAR=from-config" in body
        assert "HOME=/override" in body
        assert f"PATH={os.environ['PATH']}" in body


async def test_check_endpoint_none_is_ready_at_once() -> None:
    settings = fake_settings("m", "--never-healthy", check_endpoint="none")
    async with running_actor(settings) as (actor, _):
        await actor.ensure_ready()
        assert actor.state == "ready"


async def test_a_crash_while_ready_is_reported_and_the_next_request_restarts() -> None:
    async with running_actor(fake_settings()) as (actor, log):
        await actor.ensure_ready()
        first = actor.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        crash = await log.wait_for("failed")
        assert (crash.old, crash.new) == ("ready", "failed")
        assert "exited unexpectedly" in crash.reason
        await actor.ensure_ready()
        assert actor.pid not in (None, first)


async def test_ensure_ready_during_a_stop_waits_and_restarts() -> None:
    """llama-swap #946: a request during a (ttl) stop must be served, not wedged."""
    settings = fake_settings("m", "--ignore-sigterm", unload_timeout=0.5)
    async with running_actor(settings) as (actor, log):
        await actor.ensure_ready()
        async with anyio.create_task_group() as tg:
            tg.start_soon(actor.stop)
            await log.wait_for("stopping")
            with anyio.fail_after(15):
                await actor.ensure_ready()
        assert actor.state == "ready"
        assert [e.new for e in log.events] == [
            "launching",
            "starting",
            "ready",
            "stopping",
            "restarting",
            "launching",
            "starting",
            "ready",
        ]


async def test_stop_is_idempotent() -> None:
    async with running_actor(fake_settings()) as (actor, log):
        await actor.stop()
        await actor.ensure_ready()
        await actor.stop()
        await actor.stop()
        assert actor.state == "stopped"
        assert [e.new for e in log.events] == [
            "launching",
            "starting",
            "ready",
            "stopping",
            "stopped",
        ]


async def test_requests_after_shutdown_fail() -> None:
    async with running_actor(fake_settings()) as (actor, _):
        await actor.ensure_ready()
        await actor.shutdown()
        with pytest.raises(ProcessShutdown, match="shutdown"):
            await actor.ensure_ready()
        with pytest.raises(ProcessShutdown):
            await actor.stop()


async def test_long_output_lines_do_not_block_the_pipe() -> None:
    script = "import sys; sys.stdout.write('x' * 300000 + '\\n' + 'tail\\n'); sys.stdout.flush()"
    port = free_port()
    cmd = f'{sys.executable} -c "{script}"'
    settings = fake_settings(cmd=cmd, proxy=f"http://127.0.0.1:{port}")
    async with running_actor(settings) as (actor, _):
        with pytest.raises(StartFailed, match="code 0"):
            await actor.ensure_ready()
        lines = actor.log.lines()
        assert lines[-1] == "tail"
        assert "bytes truncated" in lines[-2]


def test_sigkill_of_llamaswap_leaves_no_upstream_alive(tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG: the upstream dies with us even when we cannot clean up."""
    settings = fake_settings()
    program = textwrap.dedent(
        f"""
        import anyio, json, sys
        from llamaswap.runtime.process import ProcessActor, UpstreamSettings

        async def main():
            actor = ProcessActor(UpstreamSettings(**{json.dumps(settings.__dict__)}))
            async with anyio.create_task_group() as tg:
                await tg.start(actor.run)
                await actor.ensure_ready()
                print(actor.pid, flush=True)
                await anyio.sleep_forever()

        anyio.run(main)
        """
    )
    host = subprocess.Popen(
        [sys.executable, "-c", program.replace('"env": []', '"env": ()')],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert host.stdout is not None
        upstream = int(host.stdout.readline())
        assert pid_alive(upstream)
        os.kill(host.pid, signal.SIGKILL)
        host.wait(5)
        deadline = time.monotonic() + 5
        while pid_alive(upstream) and time.monotonic() < deadline:
            time.sleep(0.02)  # the kernel delivers SIGKILL asynchronously
        assert not pid_alive(upstream)
    finally:
        kill_quietly(host.pid)
        host.wait(5)


def test_settings_from_a_model_config() -> None:
    from llamaswap.config import parse_config
    from llamaswap.runtime.process import UpstreamSettings

    config = parse_config(
        textwrap.dedent(
            """
            healthCheckTimeout: 20
            models:
              m:
                cmd: server --port ${PORT}
                cmdStop: kill ${PID}
                env: ["A=1"]
                unloadTimeout: 3
            """
        )
    )
    settings = UpstreamSettings.from_model(config.models["m"])
    assert settings.cmd == "server --port 5800"
    assert settings.proxy == "http://localhost:5800"
    assert settings.health_url == "http://localhost:5800/health"
    assert (settings.health_check_timeout, settings.unload_timeout) == (20, 3)
    assert settings.env == ("A=1",) and settings.cmd_stop == "kill ${PID}"
    assert json.dumps(settings.__dict__)


async def test_a_model_that_is_loading_says_for_how_long(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(process_module, "LOADING_PROGRESS_SECONDS", 0.2)
    caplog.set_level(logging.INFO, logger="llamaswap.process")
    said = anyio.Event()
    lines: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())
            if "still starting after" in record.getMessage():
                said.set()

    handler = Catch()
    logging.getLogger("llamaswap.process").addHandler(handler)
    settings = fake_settings("m", "--never-healthy", health_check_timeout=60.0)
    try:
        async with running_actor(settings) as (actor, _):
            actor.request_start("test")
            with anyio.fail_after(10):
                await said.wait()
            await actor.stop()
            count = sum("still " in line for line in lines)
            await anyio.sleep(0.5)  # the time under test: two intervals with no line
    finally:
        logging.getLogger("llamaswap.process").removeHandler(handler)
    assert any(line.startswith("[m] still starting after") for line in lines)
    assert sum("still " in line for line in lines) == count, "no progress lines once stopped"
