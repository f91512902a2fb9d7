"""The keeper between llamaswap and each upstream: transparent while llamaswap lives,
merciless to the upstream's whole tree once llamaswap is gone."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import anyio
import pytest

from llamaswap.runtime import keeper, keepers
from llamaswap.runtime.keepers import keeper_command
from llamaswap.runtime.logs import LogRing
from llamaswap.runtime.spawn import MARK_VARIABLE, PIPE_DRAIN_SECONDS, UpstreamProcess

from .helpers import kill_quietly, pid_alive

pytestmark = pytest.mark.anyio


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().rstrip("\0").split("\0")
    except OSError:  # gone
        return []


def marked(mark: str) -> list[int]:
    needle = f"\0{MARK_VARIABLE}={mark}\0".encode()
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and needle in b"\0" + (entry / "environ").read_bytes() + b"\0":
                found.append(int(entry.name))
        except OSError:
            continue
    return [pid for pid in found if pid_alive(pid)]


def wait_until(predicate: object, timeout: float) -> bool:
    """Poll other processes (no event crosses the process boundary)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return bool(predicate())  # type: ignore[operator]


@asynccontextmanager
async def kept(argv: Sequence[str]) -> AsyncIterator[tuple[UpstreamProcess, anyio.Event]]:
    """A spawned upstream under supervision, and an event set when `supervise()` has
    returned. Whatever is still running at the end is killed (its cancellation path)."""
    upstream = UpstreamProcess.spawn(argv, dict(os.environ), LogRing("t"))
    supervised = anyio.Event()

    async def supervise() -> None:
        await upstream.supervise()
        supervised.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(supervise)
        try:
            yield upstream, supervised
        finally:
            tg.cancel_scope.cancel()


async def test_pid_output_and_exit_code_are_the_commands() -> None:
    async with kept(["sh", "-c", "echo pid=$$; exit 3"]) as (upstream, supervised):
        started = time.monotonic()
        with anyio.fail_after(5):
            await supervised.wait()
    assert upstream.pid != upstream.keeper_pid
    assert upstream.returncode == 3
    assert f"pid={upstream.pid}" in upstream._log.lines()
    # The keeper does not hold the output pipe: no wait for PIPE_DRAIN_SECONDS.
    assert time.monotonic() - started < PIPE_DRAIN_SECONDS
    assert not pid_alive(upstream.keeper_pid)


async def test_death_by_signal_is_reported_as_a_negative_code() -> None:
    async with kept(["sh", "-c", "kill -TERM $$"]) as (upstream, _):
        with anyio.fail_after(5):
            await upstream.exited.wait()
    assert upstream.returncode == -signal.SIGTERM


async def test_the_command_line_shows_the_upstream_once() -> None:
    """`pgrep -f`, `ps` and a cmdStop matching command lines must not hit the keeper."""
    async with kept(["sleep", "37.5"]) as (upstream, _):
        # The keeper learns the pid (vfork semantics) a moment before the kernel has
        # set up the new program's arguments.
        assert wait_until(lambda: cmdline(upstream.pid) == ["sleep", "37.5"], 5)
        assert "37.5" not in cmdline(upstream.keeper_pid)
        assert parent_of(upstream.pid) == upstream.keeper_pid
    assert not pid_alive(upstream.pid)


async def test_a_command_that_cannot_run_raises_like_popen() -> None:
    with pytest.raises(FileNotFoundError) as failure:
        UpstreamProcess.spawn(["/nonexistent/server", "--port", "1"], {}, LogRing("t"))
    assert failure.value.errno == errno.ENOENT
    assert failure.value.filename == "/nonexistent/server"


@pytest.fixture
def no_spare() -> Iterator[None]:
    """No keeper started ahead, before and after: for tests that break how they start."""
    keepers.discard_spare()
    yield
    keepers.discard_spare()


@pytest.mark.usefixtures("no_spare")
def test_a_broken_keeper_is_a_failed_start_with_its_output_in_the_log(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(keepers, "KEEPER", "import sys; print('keeper broke'); sys.exit(3)")
    ring = LogRing("m")
    with pytest.raises(OSError, match="the keeper exited before starting the command"):
        UpstreamProcess.spawn(["sleep", "60"], {}, ring)
    assert ring.lines() == ["keeper broke"]


@pytest.mark.usefixtures("no_spare")
def test_a_missing_interpreter_is_named_as_such(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", "/nonexistent/python3")
    with pytest.raises(FileNotFoundError) as failure:
        UpstreamProcess.spawn(["sleep", "60"], {}, LogRing("m"))
    assert failure.value.strerror == (
        "cannot start the keeper (/nonexistent/python3): No such file or directory"
    )


async def test_a_long_command_line_is_passed_whole() -> None:
    args = ["x" * 100_000] * 3  # more than a pipe holds by default (64 KiB)
    argv = ["sh", "-c", 'echo "$#:${#3}"; exit 4', "sh", *args]
    async with kept(argv) as (upstream, supervised):
        with anyio.fail_after(5):
            await supervised.wait()  # after the output was drained (`exited` is earlier)
    assert upstream.returncode == 4
    assert "3:100000" in upstream._log.lines()


async def test_orphans_are_reparented_to_the_keeper_and_die_with_the_stop() -> None:
    script = "(sleep 61 &); echo ready; exec sleep 60"
    async with kept(["sh", "-c", script]) as (upstream, _):
        orphans: list[int] = []

        def find() -> bool:
            orphans[:] = [p for p in marked(upstream._mark) if cmdline(p)[:2] == ["sleep", "61"]]
            return bool(orphans)

        assert wait_until(find, 5)
        assert parent_of(orphans[0]) == upstream.keeper_pid
        with anyio.fail_after(10):
            await upstream.terminate(2.0, None, {})
        assert not pid_alive(orphans[0])
    assert marked(upstream._mark) == []


async def test_a_killed_keeper_takes_the_command_with_it() -> None:
    async with kept(["sleep", "60"]) as (upstream, _):
        os.kill(upstream.keeper_pid, signal.SIGKILL)
        with anyio.fail_after(5):
            await upstream.exited.wait()
        assert upstream.returncode == -signal.SIGKILL
        assert wait_until(lambda: not pid_alive(upstream.pid), 5)


# --- the keeper on its own, as llamaswap's sudden death leaves it -------------------------


@contextmanager
def bare_keeper(argv: Sequence[str], mark: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """The keeper started by hand (stdin a pipe we hold): (keeper, the command's pid)."""
    status_r, status_w = os.pipe()
    process = subprocess.Popen(
        keeper_command(status_w),
        stdin=subprocess.PIPE,
        pass_fds=(status_w,),
        start_new_session=True,
    )
    os.close(status_w)
    try:
        assert process.stdin is not None
        args = b"\0".join(arg.encode() for arg in argv)
        env = b"\0".join(
            f"{k}={v}".encode() for k, v in {**os.environ, MARK_VARIABLE: mark}.items()
        )
        process.stdin.write(f"{len(args)} {len(env)}\n".encode() + args + env)
        process.stdin.flush()
        with os.fdopen(status_r, "rb") as status:
            word, _, pid = status.readline().decode().partition(" ")
            assert word == "pid"
            yield process, int(pid)
    finally:
        for pid in [process.pid, *marked(mark)]:
            kill_quietly(pid)
        process.wait(5)


TREE = (
    "trap '' TERM; "  # this shell ignores SIGTERM: only SIGKILL ends it
    "bash -c 'sleep 1001; true' & "  # not exec'd: the sleep is a grandchild
    "(setsid sleep 1002 &); "  # a daemon: left the session, orphaned to the keeper
    "echo ready; wait"
)


@pytest.mark.parametrize("how", ["stdin closed", "death signal"])
def test_a_keeper_whose_llamaswap_is_gone_kills_the_whole_tree(how: str) -> None:
    mark = f"keeper-test-{os.getpid()}-{how.replace(' ', '-')}"
    with bare_keeper(["sh", "-c", TREE], mark) as (process, command):
        assert wait_until(lambda: len(marked(mark)) >= 4, 5), marked(mark)  # sh, bash, 2 sleeps
        assert process.stdin is not None
        started = time.monotonic()
        if how == "stdin closed":
            process.stdin.close()
        else:
            process.send_signal(signal.SIGTERM)  # what PR_SET_PDEATHSIG delivers
        assert process.wait(5) == 0
        assert marked(mark) == []
        assert not pid_alive(command)
        # SIGTERM, then SIGKILL after the grace for the shell that ignores it.
        assert time.monotonic() - started < 1.0 + keeper.KILL_ROUNDS_SECONDS


# --- the spare keeper, started ahead of time --------------------------------------------


async def spare_started() -> keepers.Keeper:
    """The spare keeper, once the loop's timer has forked it: the product offers no
    event for this (nothing in it waits for a spare), so poll with a deadline."""
    with anyio.fail_after(keepers.REFILL_DELAY_SECONDS + 5):
        while keepers._spare is None:  # noqa: ASYNC110 - see the docstring
            await anyio.sleep(0.01)
    return keepers._spare


@pytest.mark.usefixtures("no_spare")
async def test_the_next_start_uses_the_keeper_started_ahead() -> None:
    async with kept(["sleep", "60"]) as (first, _):
        assert keepers._spare is None  # not yet: it would compete with the command's start
        spare = await spare_started()
        assert spare.pid != first.keeper_pid
        async with kept(["sleep", "61"]) as (second, _):
            assert second.keeper_pid == spare.pid
            assert (await spare_started()).pid != spare.pid


@pytest.mark.usefixtures("no_spare")
async def test_a_spare_from_another_thread_or_a_dead_one_is_not_used() -> None:
    thread = threading.Thread(target=keepers._refill)  # a thread that then exits
    thread.start()
    thread.join()
    from_thread = keepers._spare
    assert from_thread is not None
    async with kept(["sleep", "60"]) as (upstream, _):
        assert upstream.keeper_pid != from_thread.pid
        assert from_thread.popen.poll() is not None  # ended and reaped
        spare = await spare_started()
        os.kill(spare.pid, signal.SIGKILL)
        async with kept(["sh", "-c", "exit 5"]) as (after_kill, supervised):
            with anyio.fail_after(5):
                await supervised.wait()
        assert after_kill.keeper_pid != spare.pid and after_kill.returncode == 5


async def test_the_command_is_looked_up_on_the_models_path(tmp_path: Path) -> None:
    """As with Popen(env=...): a spare keeper was started with llamaswap's PATH."""
    tool = tmp_path / "only-here"
    tool.write_text("#!/bin/sh\nexit 7\n")
    tool.chmod(0o755)
    ring = LogRing("m")
    upstream = UpstreamProcess.spawn(["only-here"], {"PATH": str(tmp_path)}, ring)
    assert await upstream.supervise() == 7
    with pytest.raises(FileNotFoundError):
        UpstreamProcess.spawn(["sleep", "1"], {"PATH": str(tmp_path)}, ring)


@pytest.mark.usefixtures("no_spare")
async def test_a_spare_lost_during_the_handover_is_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with monkeypatch.context() as patch:  # a spare alive when taken, gone once it reads
        patch.setattr(keepers, "KEEPER", "import sys; sys.stdin.buffer.read(1); sys.exit(3)")
        keepers._refill()
    lost = keepers._spare
    assert lost is not None
    async with kept(["sh", "-c", "exit 6"]) as (upstream, supervised):
        with anyio.fail_after(5):
            await supervised.wait()
    assert upstream.keeper_pid != lost.pid and upstream.returncode == 6
    assert lost.popen.returncode == 3  # reaped
