"""Starting keepers (`keeper.py`), with one always started ahead of time.

Starting a keeper costs a fork of llamaswap (4-10 ms, more under load) and an
interpreter start-up (~8 ms). Paid when a model starts, that would delay every upstream
and block the event loop as long. So a spare keeper waits, idle, for its command: a
model's start hands the command to it (the command runs ~1 ms later), and the next
spare is forked a moment later (REFILL_DELAY_SECONDS), not competing with the command's
own start-up. A start that finds no spare (the first one, or one right after another)
pays the whole cost.

The spare is forked with PR_SET_PDEATHSIG, which the kernel fires when the *thread*
that forked it exits, so a spare is used only by the thread that forked it. An idle
spare holds nothing: llamaswap's death (the signal, or EOF on its stdin) just ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import anyio

from .keeper import subtree
from .logs import LineSplitter, LogRing

log = logging.getLogger("llamaswap.process")

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
# Imported (not run as a script) so its bytecode is cached; appended to sys.path, so
# nothing in this directory can shadow the standard library.
KEEPER = (
    f"import sys; sys.path.append({str(Path(__file__).parent)!r}); "
    "import keeper; sys.exit(keeper.main(sys.argv[1:]))"
)
GRACE_SECONDS = 1.0  # when llamaswap dies: SIGTERM to the tree, SIGKILL after this
START_SECONDS = 10.0
REFILL_DELAY_SECONDS = 0.1
NO_PROCESS = -1  # a root for `subtree` that has no descendants


def keeper_command(status_fd: int) -> list[str]:
    """The keeper, run isolated (-I: no PYTHON* variables) and without site (-S:
    faster; it needs the standard library only)."""
    return [sys.executable, "-I", "-S", "-c", KEEPER, str(status_fd), f"{GRACE_SECONDS:g}"]


def _keeper_preexec(parent_pid: int) -> Callable[[], None]:
    """A preexec_fn for a keeper: it gets SIGTERM when this process (the forking thread)
    dies, and becomes the reaper of every orphan below it. Both survive its execve."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def setup() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        # If we died between fork() and prctl(), no signal will ever come: exit now.
        if os.getppid() != parent_pid:
            os._exit(1)

    return setup


class KeeperLost(OSError):
    """The keeper itself failed (not the command): it exited or did not answer."""


class Status:
    """A keeper's status pipe: one `word value` line at a time."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._pending = b""

    def read_start(self, command: str) -> int:
        """Block until the keeper reports the command's pid; raise OSError if it failed.

        Runs on the event loop: a spare answers within a millisecond, a fresh keeper
        after its interpreter's start-up, and the caller needs the pid at once.
        """
        deadline = time.monotonic() + START_SECONDS
        while b"\n" not in self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.fd], [], [], remaining)[0]:
                raise KeeperLost(errno.ETIMEDOUT, "the keeper did not start the command in time")
            chunk = os.read(self.fd, 256)
            if not chunk:
                raise KeeperLost(errno.ECHILD, "the keeper exited before starting the command")
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        word, _, value = line.decode().partition(" ")
        if word == "error":
            code = int(value)
            raise OSError(code, os.strerror(code), command)
        return int(value)

    async def line(self) -> str | None:
        """The next line, or None once the keeper has exited (end of the pipe)."""
        while b"\n" not in self._pending:
            await anyio.wait_readable(self.fd)
            try:
                chunk = os.read(self.fd, 256)
            except BlockingIOError:
                continue
            if not chunk:
                return None
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line.decode()


class Keeper:
    """A started keeper process and our ends of its pipes."""

    def __init__(
        self, popen: subprocess.Popen[bytes], status: Status, release_fd: int, output_fd: int
    ) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.status = status
        self.release_fd = release_fd  # its stdin: the command, then "release" or EOF
        self.output_fd = output_fd  # the command's merged stdout/stderr
        self.thread = threading.get_ident()

    @classmethod
    def start(cls) -> Keeper:
        """Fork a keeper, idle until `send`. Raises OSError naming the interpreter."""
        output_r, output_w = os.pipe()
        status_r, status_w = os.pipe()
        release_r, release_w = os.pipe()
        try:
            popen = subprocess.Popen(
                keeper_command(status_w),
                stdin=release_r,
                stdout=output_w,
                stderr=output_w,
                start_new_session=True,
                preexec_fn=_keeper_preexec(os.getpid()),
                close_fds=True,
                pass_fds=(status_w,),
            )
        except OSError as exc:
            for fd in (output_r, status_r, release_w):
                os.close(fd)
            reason = f"cannot start the keeper ({sys.executable}): {exc.strerror or exc}"
            raise OSError(exc.errno, reason) from exc
        finally:
            for fd in (output_w, status_w, release_r):
                os.close(fd)
        return cls(popen, Status(status_r), release_w, output_r)

    def send(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        """Hand over the command; grows the (empty) pipe when needed, so never blocks."""
        args = b"\0".join(os.fsencode(arg) for arg in argv)
        environ = b"\0".join(os.fsencode(f"{name}={value}") for name, value in env.items())
        message = f"{len(args)} {len(environ)}\n".encode() + args + environ
        if len(message) > fcntl.fcntl(self.release_fd, fcntl.F_GETPIPE_SZ):
            try:
                fcntl.fcntl(self.release_fd, fcntl.F_SETPIPE_SZ, len(message))
            except OSError:  # over /proc/sys/fs/pipe-max-size
                raise OSError(
                    errno.E2BIG, f"command and environment too long ({len(message)} bytes)"
                ) from None
        os.write(self.release_fd, message)

    def abandon(self, log_ring: LogRing | None = None) -> None:
        """A keeper we will not use (any more): keep what it printed (a traceback, if it
        broke) in `log_ring`, close our ends (EOF: it exits) and reap it."""
        if log_ring is not None:
            os.set_blocking(self.output_fd, False)
            splitter = LineSplitter()
            with contextlib.suppress(OSError):
                for line in splitter.feed(os.read(self.output_fd, 65536)):
                    log_ring.append(line)
            for line in splitter.flush():
                log_ring.append(line)
        for fd in (self.output_fd, self.status.fd, self.release_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        try:
            self.popen.wait(1.0)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


_spare: Keeper | None = None


def _take() -> tuple[Keeper, bool]:
    """(a keeper, whether it is the spare)."""
    global _spare
    spare, _spare = _spare, None
    if spare is not None:
        if spare.thread == threading.get_ident() and spare.popen.poll() is None:
            return spare, True
        spare.abandon()
    return Keeper.start(), False


def _refill() -> None:
    global _spare
    if _spare is None:
        try:
            _spare = Keeper.start()
        except OSError as exc:  # the next start tries again, and says why
            log.debug("no spare keeper: %s", exc)


def _refill_later() -> None:
    """Fork the next spare soon, on this thread's event loop (it must be this thread);
    without a running asyncio loop (uvloop is one), now."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        _refill()
    else:
        loop.call_later(REFILL_DELAY_SECONDS, _refill)


def discard_spare() -> None:
    """End the spare keeper, if any (tests that change how keepers start)."""
    global _spare
    spare, _spare = _spare, None
    if spare is not None:
        spare.abandon()


def launch(
    argv: Sequence[str], env: Mapping[str, str], mark: str, log_ring: LogRing
) -> tuple[Keeper, int]:
    """Run `argv` under a keeper: (the keeper, the command's pid). Raises OSError when
    the command cannot be executed, as `subprocess.Popen` would."""
    keeper, spare = _take()
    try:
        try:
            return keeper, _hand_over(keeper, argv, env, log_ring)
        except KeeperLost:
            if not spare:
                raise
        # A spare that died meanwhile (killed, or its thread gone): once more, fresh.
        # Its pid may be reused by now: find what it started by the mark alone.
        _signal_all(subtree(NO_PROCESS, mark) if mark else set())
        keeper = Keeper.start()
        return keeper, _hand_over(keeper, argv, env, log_ring)
    finally:
        _refill_later()


def _hand_over(
    keeper: Keeper, argv: Sequence[str], env: Mapping[str, str], log_ring: LogRing
) -> int:
    try:
        keeper.send(argv, env)
        return keeper.status.read_start(argv[0] if argv else "")
    except BaseException:
        keeper.abandon(log_ring)
        raise


def _signal_all(pids: set[int]) -> None:
    """SIGKILL what a lost keeper may have started already (it carries the mark)."""
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
