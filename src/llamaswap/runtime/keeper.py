"""The keeper: a tiny parent between llamaswap and one upstream, so the upstream's whole
process tree dies with llamaswap, even on `kill -9`.

PR_SET_PDEATHSIG reaches a direct child only. A `cmd` such as `bash -c "server; true"`, a
wrapper script that does not `exec`, or a daemon that double-forks leaves the real server
one or more levels down, or reparented to init, where no signal from the kernel reaches it.
So llamaswap starts this program instead, with PR_SET_PDEATHSIG = SIGTERM and
PR_SET_CHILD_SUBREAPER already set (both survive execve). The keeper starts the real
command in its own session; every orphan below it is reparented to the keeper rather than
to init. When llamaswap dies (the death signal, or EOF on the keeper's stdin, which is a
pipe only llamaswap holds) the keeper terminates its whole subtree: SIGTERM, a short
grace, SIGKILL. It finds the subtree by walking /proc parent links and by the
LLAMASWAP_UPSTREAM mark every process of the upstream inherits.

Run by llamaswap as `python -I -S -c "...import keeper..." STATUS_FD GRACE` with this
directory on sys.path, so neither site nor llamaswap is imported: this module uses the
standard library only, and neither `typing` nor `signal`, whose imports would cost more
than the rest together. `python keeper.py STATUS_FD GRACE` works too.

The command and its environment come on stdin, not in argv: `ps`, `pgrep -f` and a
`cmdStop` that matches command lines see the upstream once, not twice, and llamaswap can
start a keeper ahead of time, so a model's start does not wait for an interpreter (see
`spawn.py`). The message: two decimal byte counts and a newline, then the arguments and
then the `NAME=value` entries, each list separated by NUL bytes. After that, stdin tells
the keeper llamaswap's will: any byte means "release" (llamaswap has cleaned up after the
upstream itself; kill whatever is left at once and exit), EOF means llamaswap is gone
(terminate everything gracefully and exit). Until its command comes, the keeper holds
nothing: a signal or EOF simply ends it.

On STATUS_FD, one line each: `pid N` once the command runs, or `error ERRNO` when it
could not be executed; `exit CODE` when it ended (negative: killed by that signal, as
in `subprocess`).

The keeper's own stdout/stderr point at /dev/null once the command runs, so the output
pipe closes when the upstream's last process does, not when the keeper exits.
"""

from __future__ import annotations

import os
import select
import sys
import time

TYPE_CHECKING = False  # not from typing: importing it would double the start-up time
if TYPE_CHECKING:
    import signal as _signal
else:
    try:
        import _signal  # the C module behind `signal`, without its enum import
    except ImportError:  # pragma: no cover - every CPython has it
        import signal as _signal

MARK_VARIABLE = "LLAMASWAP_UPSTREAM"  # spawn.py's MARK_VARIABLE: the keeper imports nothing
TEARDOWN_SIGNALS = (_signal.SIGTERM, _signal.SIGHUP, _signal.SIGINT, _signal.SIGQUIT)
KILL_ROUNDS_SECONDS = 2.0  # after SIGKILL, how long to keep sweeping for new forks
POLL_SECONDS = 0.02


def _stat(pid: str) -> list[bytes] | None:
    """/proc/<pid>/stat after the command name: [state, ppid, pgrp, ...]."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None


def subtree(root: int, mark: str) -> set[int]:
    """Live (non-zombie) processes below `root`, plus any carrying `mark` (never `root`)."""
    parents: dict[int, list[int]] = {}
    needle = f"\0{MARK_VARIABLE}={mark}\0".encode() if mark else b""
    found: set[int] = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _stat(name)
        if fields is None or fields[0] == b"Z":
            continue
        pid = int(name)
        parents.setdefault(int(fields[1]), []).append(pid)
        if needle and pid != root:
            try:
                with open(f"/proc/{name}/environ", "rb") as environ:
                    if needle in b"\0" + environ.read() + b"\0":
                        found.add(pid)
            except OSError:  # gone, or not ours
                pass
    todo = list(parents.get(root, []))
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(parents.get(pid, []))
    return found


def _signal_all(pids: set[int], sig: int) -> None:
    for pid in pids:
        try:  # noqa: SIM105 - contextlib would be the keeper's costliest import
            os.kill(pid, sig)
        except OSError:  # gone, or not ours to signal
            pass


class Keeper:
    """Runs the command, reports it, reaps orphans, tears the tree down when told."""

    def __init__(self, status_fd: int, grace: float, mark: str) -> None:
        self.status_fd = status_fd
        self.grace = grace
        self.child = 0
        self.reported = False
        self.mark = mark
        self.wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        _signal.set_wakeup_fd(wake_w)
        for sig in (_signal.SIGCHLD, *TEARDOWN_SIGNALS):
            _signal.signal(sig, _ignore)

    def say(self, line: str) -> None:
        try:  # noqa: SIM105 - contextlib would be the keeper's costliest import
            os.write(self.status_fd, line.encode() + b"\n")
        except OSError:  # llamaswap is gone: nobody listens
            pass

    def start(self, argv: list[str], env: dict[str, str]) -> bool:
        # posix_spawnp searches our own PATH: make it the command's, as Popen(env=) does.
        if "PATH" in env:
            os.environ["PATH"] = env["PATH"]
        else:
            os.environ.pop("PATH", None)
        try:
            self.child = os.posix_spawnp(
                argv[0],
                argv,
                env,
                file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)],
                setsid=True,
                setsigdef=(_signal.SIGPIPE, _signal.SIGXFSZ),  # Python ignores these
            )
        except OSError as exc:
            self.say(f"error {exc.errno or 0}")
            return False
        self.say(f"pid {self.child}")
        quiet = os.open(os.devnull, os.O_WRONLY)
        os.dup2(quiet, 1)
        os.dup2(quiet, 2)
        os.close(quiet)
        return True

    def reap(self) -> None:
        """Collect every exited child (orphans come to us); report the command's exit."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.child and not self.reported:
                self.reported = True
                self.say(f"exit {os.waitstatus_to_exitcode(status)}")

    def run(self) -> None:
        """Wait for signals and stdin until llamaswap releases us or goes away."""
        while True:
            ready, _, _ = select.select([0, self.wake_r], [], [])
            if self.wake_r in ready:
                signals = self._drain_wakeups()
                self.reap()
                if any(sig in TEARDOWN_SIGNALS for sig in signals):
                    self.teardown(self.grace)
                    return
            if 0 in ready:
                try:
                    data = os.read(0, 64)
                except OSError:
                    data = b""
                self.teardown(0.0 if data else self.grace)
                return

    def _drain_wakeups(self) -> bytes:
        data = b""
        while True:
            try:
                chunk = os.read(self.wake_r, 512)
            except BlockingIOError:
                return data
            if not chunk:
                return data
            data += chunk

    def teardown(self, grace: float) -> None:
        """SIGTERM the subtree, wait up to `grace` seconds, then SIGKILL until none is left."""
        me = os.getpid()
        if grace > 0:
            _signal_all(subtree(me, self.mark), _signal.SIGTERM)
            deadline = time.monotonic() + grace
            while subtree(me, self.mark) and time.monotonic() < deadline:
                self._pause()
        deadline = time.monotonic() + KILL_ROUNDS_SECONDS
        while (left := subtree(me, self.mark)) and time.monotonic() < deadline:
            _signal_all(left, _signal.SIGKILL)
            self._pause()
        self.reap()

    def _pause(self) -> None:
        select.select([self.wake_r], [], [], POLL_SECONDS)
        self._drain_wakeups()
        self.reap()


def _ignore(signum: int, frame: object) -> None:
    """Signals only wake the select() through the wakeup fd; the loop acts on them."""


def _read_exactly(size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = os.read(0, size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def read_command() -> tuple[list[str], dict[str, str]]:
    """The command and its environment from stdin (see the module docstring).
    EOFError if llamaswap is gone."""
    header = b""
    while not header.endswith(b"\n"):
        header += _read_exactly(1)
    argv_size, env_size = (int(size) for size in header.split())
    argv = [os.fsdecode(arg) for arg in _read_exactly(argv_size).split(b"\0")]
    env: dict[str, str] = {}
    for entry in _read_exactly(env_size).split(b"\0") if env_size else []:
        name, _, value = os.fsdecode(entry).partition("=")
        env[name] = value
    return argv, env


def main(args: list[str]) -> int:
    if len(args) != 2:
        os.write(2, b"usage: keeper.py STATUS_FD GRACE < COMMAND\n")
        return 2
    status_fd, grace = int(args[0]), float(args[1])
    os.set_inheritable(status_fd, False)
    try:
        argv, env = read_command()
    except EOFError:
        return 1
    keeper = Keeper(status_fd, grace, env.get(MARK_VARIABLE, ""))
    if not keeper.start(argv, env):
        return 127
    keeper.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
