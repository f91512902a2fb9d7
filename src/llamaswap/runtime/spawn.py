"""Spawning, watching and killing one upstream process group. No orphans, ever.

Why not `anyio.open_process`: it cannot set a parent-death signal, and when cancelled it
kills only the direct child, never its process group. So each upstream is started through
a keeper (`keeper.py`, started by `keepers.py`): a tiny process that llamaswap forks with
`PR_SET_PDEATHSIG` and `PR_SET_CHILD_SUBREAPER`, and that starts the real command in its
own session (process group id = pid). The kernel's death signal reaches only a direct
child; the keeper is that child, and every orphan of the upstream's tree is reparented
to it, so all of them die with llamaswap, even on `kill -9`.

The keeper is transparent: `pid` and `pgid` are the real command's, signals and `cmdStop`
go to it as before, its output pipe is read here in chunks from a non-blocking fd, and
its exit code comes over the keeper's status pipe. Processes are awaited through pidfds
(no watcher thread), which also work for processes that are not our children.

Keepers are forked on the event-loop thread on purpose: Linux sends the parent-death
signal when the *thread* that forked the child exits, so forking from a short-lived
worker thread would kill the upstream when that thread retires.

Every upstream's environment carries a unique `LLAMASWAP_UPSTREAM` mark. A daemon that
called setsid() and whose parent exited has left both the process group and the process
tree, but it still carries the mark (/proc/<pid>/environ), so it dies with its upstream.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
from collections.abc import Sequence

import anyio

from .keeper import MARK_VARIABLE
from .keepers import Keeper, launch
from .logs import LineSplitter, LogRing

log = logging.getLogger("llamaswap.process")

PIPE_DRAIN_SECONDS = 1.0
REAP_AFTER_KILL_SECONDS = 5.0
GROUP_EXIT_SECONDS = 2.0


def _stat_fields(pid: int | str) -> list[bytes] | None:
    """/proc/<pid>/stat after the command name: [state, ppid, pgrp, session, ...]."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None


def _live_processes() -> dict[int, list[bytes]]:
    found = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (fields := _stat_fields(entry.name)) and fields[0] != b"Z":
            found[int(entry.name)] = fields
    return found


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group `pgid`, read from /proc."""
    return [pid for pid, fields in _live_processes().items() if int(fields[2]) == pgid]


def descendants(root: int) -> list[tuple[int, bytes]]:
    """(pid, start time) of every live process below `root` in the process tree.

    Taken when a stop begins, while the tree is intact: a child that called setsid()
    has left the process group, and once its parent dies only this list still knows it.
    The start time tells a later process that reused the pid apart.
    """
    processes = _live_processes()
    children: dict[int, list[int]] = {}
    for pid, fields in processes.items():
        children.setdefault(int(fields[1]), []).append(pid)
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append((pid, processes[pid][19]))
        todo.extend(children.get(pid, []))
    return found


_marks = itertools.count(1)


def new_mark() -> str:
    """A value for MARK_VARIABLE no other upstream (of this or another llamaswap) has."""
    return f"{os.getpid()}-{next(_marks)}"


def marked(mark: str) -> list[tuple[int, bytes]]:
    """(pid, start time) of live processes whose initial environment carries `mark`."""
    needle = f"\0{MARK_VARIABLE}={mark}\0".encode()
    found = []
    for pid, fields in _live_processes().items():
        try:
            with open(f"/proc/{pid}/environ", "rb") as environ:
                if needle in b"\0" + environ.read() + b"\0":
                    found.append((pid, fields[19]))
        except OSError:  # gone, or another user's process
            continue
    return found


def kill_if_same(pid: int, started: bytes) -> bool:
    """SIGKILL `pid` if it is still the process that started at `started`."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] == b"Z" or fields[19] != started:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True


async def wait_gone(pid: int) -> None:
    """Return once `pid` has exited (a pidfd works for any process, not only children)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        await anyio.wait_readable(fd)
    finally:
        os.close(fd)


async def wait_group_gone(pgid: int) -> None:
    """Return once every member of the group has exited (pidfds work for non-children too)."""
    for pid in group_members(pgid):
        await wait_gone(pid)


def merged_environment(extra: Sequence[str]) -> dict[str, str]:
    """Our environment plus `NAME=value` entries (later entries win)."""
    env = dict(os.environ)
    for entry in extra:
        name, sep, value = entry.partition("=")
        if sep and name:
            env[name] = value
    return env


class UpstreamProcess:
    """One spawned upstream: its pid, its process group, its output, its exit."""

    def __init__(self, keeper: Keeper, pid: int, log_ring: LogRing, mark: str = "") -> None:
        self._keeper = keeper.popen
        self.keeper_pid = keeper.pid
        self._keeper_fd = os.pidfd_open(keeper.pid)  # our child: no pid reuse before wait()
        self._mark = mark
        self.pid = pid
        self.pgid = pid  # the keeper starts the command in a new session: a group leader
        self._output_fd = keeper.output_fd
        self._status = keeper.status
        self._release_fd = keeper.release_fd
        self._log = log_ring
        self.returncode: int | None = None
        self.exited = anyio.Event()
        self._grace_until: float | None = None  # set while a graceful stop is under way
        self._tree: list[tuple[int, bytes]] = []  # descendants when the stop began

    @classmethod
    def spawn(cls, argv: Sequence[str], env: dict[str, str], log_ring: LogRing) -> UpstreamProcess:
        """Start `argv` in a new session, under a keeper. Raises OSError when it cannot be
        executed (as `subprocess.Popen` would)."""
        mark = new_mark()
        keeper, pid = launch(argv, {**env, MARK_VARIABLE: mark}, mark, log_ring)
        os.set_blocking(keeper.output_fd, False)
        os.set_blocking(keeper.status.fd, False)
        return cls(keeper, pid, log_ring, mark)

    @property
    def log_source(self) -> str:
        return self._log.source

    def processes(self) -> set[int]:
        """Every live process of this upstream: the command, the keeper's subtree (where
        orphans go), and whatever carries the mark."""
        found = {self.pid, *(pid for pid, _ in descendants(self.keeper_pid))}
        return found | {pid for pid, _ in marked(self._mark)} if self._mark else found

    def abort(self, reason: str) -> None:
        """Kill the upstream now, with `reason` as the last line of its log."""
        self._log.append(reason)
        self.signal_group(signal.SIGKILL)

    def signal_group(self, sig: int) -> bool:
        """Send `sig` to the whole process group; False when nothing was left to signal."""
        try:
            os.killpg(self.pgid, sig)
        except ProcessLookupError:
            return False
        except PermissionError:  # a member changed credentials: at least hit the leader
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                return False
        return True

    async def supervise(self) -> int:
        """Pump output until the process exits, then clear its group and return its code.

        Leftover group members (a wrapper's background children) are killed, and the
        pipe is drained for at most PIPE_DRAIN_SECONDS, since a grandchild that left
        the group may hold it open forever.
        """
        pumped = anyio.Event()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._pump, pumped)
                self.returncode = await self._wait_exit()
                await self._clear_group()
                self.exited.set()
                with anyio.move_on_after(PIPE_DRAIN_SECONDS):
                    await pumped.wait()
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._kill_and_reap()
            self._close_fds()
        assert self.returncode is not None
        return self.returncode

    async def _clear_group(self) -> None:
        """The leader is gone: let the rest of the group finish a graceful stop, then kill it.

        A wrapper script dies at once on SIGTERM while the real server behind it is still
        shutting down; that server keeps what is left of the grace period. Outside a stop
        (a crash) leftovers are killed at once.
        """
        if self._grace_until is not None:
            with anyio.move_on_after(max(0.0, self._grace_until - anyio.current_time())):
                await wait_group_gone(self.pgid)
        self.signal_group(signal.SIGKILL)
        leftovers = set(self._tree) | {
            (pid, started)
            for pid, started in (marked(self._mark) if self._mark else ())
            if pid != self.keeper_pid
        }
        escaped = sorted(pid for pid, started in leftovers if kill_if_same(pid, started))
        if escaped:
            log.warning("pid %d: killed %s, which had left its process group", self.pid, escaped)
        with anyio.move_on_after(GROUP_EXIT_SECONDS):
            await wait_group_gone(self.pgid)
            for pid in escaped:
                await wait_gone(pid)

    async def terminate(
        self, grace: float, stop_argv: Sequence[str] | None, env: dict[str, str]
    ) -> None:
        """Ask the process to stop (cmdStop or SIGTERM), then SIGKILL after `grace` seconds.

        Returns once the process has exited. Real llama-server ignores SIGTERM while a
        request is in flight, so the escalation is not optional.
        """
        self._grace_until = anyio.current_time() + grace
        self._tree = descendants(self.pid)
        with anyio.move_on_after(grace) as scope:
            if stop_argv:
                await self._run_stop_command(stop_argv, env)
            else:
                self.signal_group(signal.SIGTERM)
            await self.exited.wait()
        if scope.cancelled_caught and not self.exited.is_set():
            log.warning("pid %d did not exit %.1fs after the stop signal: SIGKILL", self.pid, grace)
            self.signal_group(signal.SIGKILL)
            await self.exited.wait()

    async def _run_stop_command(self, argv: Sequence[str], env: dict[str, str]) -> None:
        try:
            stopper = UpstreamProcess.spawn(argv, env, self._log)
        except OSError as exc:
            log.warning("cmdStop %r failed to start (%s): SIGTERM instead", list(argv), exc)
            self.signal_group(signal.SIGTERM)
            return
        code = await stopper.supervise()
        if code != 0:
            log.warning("cmdStop %r exited with code %d", list(argv), code)

    async def _pump(self, done: anyio.Event) -> None:
        splitter = LineSplitter()
        try:
            while True:
                await anyio.wait_readable(self._output_fd)
                try:
                    chunk = os.read(self._output_fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    break
                for line in splitter.feed(chunk):
                    self._log.append(line)
        except OSError:
            pass
        finally:
            for line in splitter.flush():
                self._log.append(line)
            done.set()

    async def _wait_exit(self) -> int:
        """The command's exit code, as its keeper reports it.

        Should the keeper die first (killed by someone), the command is killed and
        reported as killed: without its keeper nothing would reap its orphans.
        """
        while True:
            line = await self._status.line()
            if line is None:
                log.warning(
                    "pid %d: its keeper (pid %d) exited with code %s first: SIGKILL",
                    self.pid,
                    self.keeper_pid,
                    self._keeper.poll(),
                )
                self.signal_group(signal.SIGKILL)
                with anyio.move_on_after(GROUP_EXIT_SECONDS):
                    await wait_gone(self.pid)
                return -signal.SIGKILL
            word, _, value = line.partition(" ")
            if word == "exit":
                return int(value)

    async def _kill_and_reap(self) -> None:
        """Make sure nothing of ours survives this object, even on cancellation."""
        if self.returncode is None:
            self.signal_group(signal.SIGKILL)
            with anyio.move_on_after(REAP_AFTER_KILL_SECONDS):
                self.returncode = await self._wait_exit()
            if self.returncode is None:
                self.returncode = -signal.SIGKILL
            self.exited.set()
        await self._release_keeper()

    async def _release_keeper(self) -> None:
        """Tell the keeper we are done (it kills whatever is left at once), then reap it."""
        if self._release_fd >= 0:
            with contextlib.suppress(OSError):
                os.write(self._release_fd, b"release")
            os.close(self._release_fd)
            self._release_fd = -1
        with anyio.move_on_after(REAP_AFTER_KILL_SECONDS):
            await anyio.wait_readable(self._keeper_fd)
        if self._keeper.poll() is None:
            log.warning("keeper pid %d did not exit when released: SIGKILL", self.keeper_pid)
            self._keeper.kill()
            with anyio.move_on_after(REAP_AFTER_KILL_SECONDS):
                await anyio.wait_readable(self._keeper_fd)
            self._keeper.poll()

    def _close_fds(self) -> None:
        for fd in (self._output_fd, self._status.fd, self._release_fd, self._keeper_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._output_fd = self._status.fd = self._release_fd = self._keeper_fd = -1
