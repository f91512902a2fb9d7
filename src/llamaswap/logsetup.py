"""Logging as llama-swap configures it: logLevel, logTimeFormat and logToStdout.

llamaswap's own messages go through Python `logging` into the `proxy` log ring (what
/logs shows) and, when logToStdout is `proxy` or `both`, to stdout; upstream output is
echoed to stdout when it is `upstream` or `both`. Colour only on a terminal.

Lines about misbehaving clients (`llamaswap.clients`: malformed requests, slow request
heads, refused connections) are rate-limited, so a flood of bad requests cannot push
the real history out of the /logs ring.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from typing import TextIO

from llamaswap.config import Config
from llamaswap.runtime.logs import LogRing

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}
# llama-swap's Go time layouts, as strftime formats
TIME_FORMATS = {
    "ansic": "%a %b %e %H:%M:%S %Y",
    "unixdate": "%a %b %e %H:%M:%S %Z %Y",
    "rubydate": "%a %b %d %H:%M:%S %z %Y",
    "rfc822": "%d %b %y %H:%M %Z",
    "rfc822z": "%d %b %y %H:%M %z",
    "rfc850": "%A, %d-%b-%y %H:%M:%S %Z",
    "rfc1123": "%a, %d %b %Y %H:%M:%S %Z",
    "rfc1123z": "%a, %d %b %Y %H:%M:%S %z",
    "rfc3339": "%Y-%m-%dT%H:%M:%S%z",
    "rfc3339nano": "%Y-%m-%dT%H:%M:%S.%f%z",
    "kitchen": "%I:%M%p",
    "stamp": "%b %e %H:%M:%S",
    "stampmilli": "%b %e %H:%M:%S.%f",
    "stampmicro": "%b %e %H:%M:%S.%f",
    "stampnano": "%b %e %H:%M:%S.%f",
}
COLOURS = {"DEBUG": "\033[2m", "INFO": "\033[36m", "WARNING": "\033[33m", "ERROR": "\033[31m"}
RESET = "\033[0m"


class _Formatter(logging.Formatter):
    def __init__(self, time_format: str, colour: bool) -> None:
        super().__init__()
        self._time_format = TIME_FORMATS.get(time_format.strip().lower(), "")
        self._colour = colour

    def format(self, record: logging.LogRecord) -> str:
        stamp = self.formatTime(record, self._time_format) + " " if self._time_format else ""
        level = record.levelname
        if self._colour:
            level = f"{COLOURS.get(level, '')}{level}{RESET}"
        text = f"{stamp}[{level}] {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class RingHandler(logging.Handler):
    """Feeds formatted records into a LogRing (what /logs and /logs/stream serve)."""

    def __init__(self, ring: LogRing) -> None:
        super().__init__()
        self.ring = ring

    def emit(self, record: logging.LogRecord) -> None:
        try:
            for line in self.format(record).splitlines() or [""]:
                self.ring.append(line)
        except Exception:  # logging must never raise
            self.handleError(record)


CLIENT_LOG = "llamaswap.clients"
CLIENT_LINES_BURST = 10  # client-fault lines logged per window...
CLIENT_LINES_WINDOW = 60.0  # ...of this many seconds; the rest are counted


class RateLimited(logging.Filter):
    """Lets `burst` records through per `window` seconds and counts the rest; when the
    window ends, one line says how many were left out."""

    def __init__(
        self,
        logger: logging.Logger,
        burst: int = CLIENT_LINES_BURST,
        window: float = CLIENT_LINES_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.logger = logger
        self.burst = burst
        self.window = window
        self.clock = clock
        self.started = float("-inf")
        self.passed = 0
        self.suppressed = 0
        self._timer: asyncio.TimerHandle | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "rate_summary", False):
            return True
        now = self.clock()
        if now - self.started >= self.window:
            self.flush()
            self.started, self.passed = now, 0
        if self.passed < self.burst:
            self.passed += 1
            return True
        self.suppressed += 1
        if self.suppressed == 1:
            self._flush_at_window_end(now)
        return False

    def flush(self) -> None:
        """Log how many lines were left out since the last summary (if any were)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.suppressed:
            count, self.suppressed = self.suppressed, 0
            self.logger.warning(
                "%d more lines about misbehaving clients in the last %g s were not logged",
                count,
                self.window,
                extra={"rate_summary": True},
            )

    def _flush_at_window_end(self, now: float) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no event loop here: the next record after the window reports
        self._timer = loop.call_later(self.started + self.window - now, self.flush)


def configure(config: Config, proxy_log: LogRing, stream: TextIO | None = None) -> None:
    """Route llamaswap's logging per the config (safe to call again after a reload)."""
    stream = stream or sys.stdout
    # Every proxied request logs a line; our formats never show the caller's file,
    # thread or process, so skip collecting them (the Logging HOWTO's "Optimization").
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger("llamaswap")
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(LEVELS.get(config.log_level.strip().lower(), logging.INFO))
    root.propagate = False
    ring_handler = RingHandler(proxy_log)
    ring_handler.setFormatter(_Formatter(config.log_time_format, colour=False))
    root.addHandler(ring_handler)
    if config.log_to_stdout in ("proxy", "both"):
        console = logging.StreamHandler(stream)
        console.setFormatter(_Formatter(config.log_time_format, colour=stream.isatty()))
        root.addHandler(console)
    _rate_limit_client_lines()


def _rate_limit_client_lines() -> None:
    """A fresh RateLimited filter on the client-fault logger (the old one reports what
    it left out first)."""
    clients = logging.getLogger(CLIENT_LOG)
    for old in [f for f in clients.filters if isinstance(f, RateLimited)]:
        clients.removeFilter(old)
        old.flush()
    clients.addFilter(RateLimited(clients))


def echoes_upstream(config: Config) -> bool:
    return config.log_to_stdout in ("upstream", "both")
