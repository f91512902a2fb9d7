"""How the fake upstream starts, stops and dies: signals, timers and the process start time.

The behaviours here are what llamaswap's process supervisor is tested against, so they follow
llama-swap's simple-responder where it had one (SIGTERM exits; a first SIGINT only logs, the
second exits; `--ignore-sigterm` leaves only SIGKILL) and add the failure modes a real
llama-server shows (slow shutdown, dying on its own).

Signal handlers are installed twice: with `signal.signal` before aiohttp is even imported (about
0.4 s, most of it building aiohttp's TLS contexts), and with `loop.add_signal_handler` once the
event loop runs. Without the early ones, a SIGTERM sent right after spawn would kill an
`--ignore-sigterm` fake with the default action and make a test flaky.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from types import FrameType

from llamaswap.testing.console import say
from llamaswap.testing.options import Options

CRASH_EXIT_CODE = 7
EXIT_AFTER_CODE = 3


def process_started() -> float:
    """The `time.monotonic()` reading at which this process was forked (Linux), else now.

    Options such as `--startup-delay 1` promise behaviour relative to process start, which is
    what the spawning test measures from; interpreter start-up and imports (about 0.5 s) would
    otherwise be added to every delay. /proc gives the start time in clock ticks since boot,
    CLOCK_BOOTTIME the time since boot, so their difference is the process age (10 ms grain).
    """
    now = time.monotonic()
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of proc(5); the list starts at field 3
        since_boot = time.clock_gettime(time.CLOCK_BOOTTIME)
        age = since_boot - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return now
    return now - min(max(age, 0.0), 60.0)


def crash(done: int, total: int) -> None:
    """Die like a segfaulting server: no cleanup, no closing frames, exit code 7."""
    say(f"crashing mid-stream after {done} of {total} chunks (exit {CRASH_EXIT_CODE})")
    os._exit(CRASH_EXIT_CODE)


class Lifecycle:
    """Turns signals and `--exit-after` into an exit code for the server loop to return."""

    def __init__(self, opts: Options, started: float) -> None:
        self.opts = opts
        self.started = started
        self._sigints = 0
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._exit: asyncio.Future[int] | None = None

    def exit_due(self) -> bool:
        """Whether `--exit-after` has already run out (it is checked before binding)."""
        return (
            self.opts.exit_after is not None
            and time.monotonic() >= self.started + self.opts.exit_after
        )

    def install_early(self) -> None:
        """Take over SIGTERM and SIGINT before the slow imports."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def attach(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[int]:
        """Move signal handling onto `loop`; the returned future resolves to the exit code."""
        self._loop = loop
        self._exit = loop.create_future()
        loop.add_signal_handler(signal.SIGTERM, self.on_sigterm)
        loop.add_signal_handler(signal.SIGINT, self.on_sigint)
        if self.opts.exit_after is not None:
            remaining = self.started + self.opts.exit_after - time.monotonic()
            loop.call_later(max(remaining, 0.0), self.exit_now)
        return self._exit

    def exit_now(self) -> None:
        """`--exit-after` ran out: leave at once, the way a process that dies by itself does."""
        say(f"exiting after {self.opts.exit_after:g} s")
        os._exit(EXIT_AFTER_CODE)

    def on_sigterm(self) -> None:
        if self.opts.ignore_sigterm:
            say("SIGTERM ignored")
            return
        if self._stopping:
            say("SIGTERM received again, already stopping")
            return
        self._stopping = True
        delay = self.opts.slow_stop
        say(f"SIGTERM received, exiting in {delay:g} s" if delay else "SIGTERM received, exiting")
        self._leave(0, delay)

    def on_sigint(self) -> None:
        self._sigints += 1
        if self._sigints == 1:
            say("SIGINT received, send another SIGINT to exit")
            return
        say("second SIGINT received, exiting")
        self._leave(0, 0.0)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGTERM:
            self.on_sigterm()
        else:
            self.on_sigint()

    def _leave(self, code: int, delay: float) -> None:
        loop, exit_code = self._loop, self._exit
        if loop is None or exit_code is None:
            # Still starting: nothing is bound or open yet, so leaving from here is clean.
            if delay:
                time.sleep(delay)
            raise SystemExit(code)
        loop.call_later(delay, _resolve, exit_code, code)


def _resolve(future: asyncio.Future[int], code: int) -> None:
    if not future.done():
        future.set_result(code)
