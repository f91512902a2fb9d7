"""Bounded log history with live followers.

Upstream output is read in chunks and cut into lines here, never with `readline()`
(asyncio's readline fails on lines over 64 KiB). Each model, the combined upstream
log and llamaswap's own log are a `LogRing`; a ring forwards its lines to parent
rings, so one append feeds the model log and the combined log alike.
"""

from __future__ import annotations

from collections import deque

from .events import EventBus, LogLine, Subscription

MAX_LINE_BYTES = 16 * 1024


class LineSplitter:
    """Turns a byte stream into lines; overlong lines are truncated, not buffered."""

    def __init__(self, max_line: int = MAX_LINE_BYTES) -> None:
        self._max = max_line
        self._pending = bytearray()
        self._skipped = 0  # bytes dropped from the current overlong line

    def feed(self, chunk: bytes) -> list[str]:
        lines: list[str] = []
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                self._keep(chunk[start:])
                return lines
            self._keep(chunk[start:end])
            lines.append(self._take())
            start = end + 1

    def flush(self) -> list[str]:
        """The unterminated last line, if any (call at end of stream)."""
        return [self._take()] if self._pending or self._skipped else []

    def _keep(self, piece: bytes) -> None:
        room = self._max - len(self._pending)
        self._pending += piece[:room]
        self._skipped += max(0, len(piece) - room)

    def _take(self) -> str:
        text = self._pending.decode("utf-8", errors="replace").rstrip("\r")
        if self._skipped:
            text += f" ...[{self._skipped} bytes truncated]"
        self._pending.clear()
        self._skipped = 0
        return text


class LogRing:
    """The last lines of one log, bounded by count and bytes, with live subscribers."""

    def __init__(
        self,
        source: str,
        *,
        max_lines: int = 2000,
        max_bytes: int = 100 * 1024,
        parents: tuple[LogRing, ...] = (),
    ) -> None:
        self.source = source
        self._lines: deque[str] = deque()
        self._appended = 0  # lines ever appended: what `mark()` hands out
        self._bytes = 0
        self._max_lines = max_lines
        self._max_bytes = max_bytes
        self._parents = parents
        self._bus = EventBus()

    def append(self, text: str, *, source: str | None = None) -> None:
        """Record one line (without its newline) and forward it to parents and followers."""
        self._lines.append(text)
        self._appended += 1
        self._bytes += len(text) + 1
        while self._lines and (len(self._lines) > self._max_lines or self._bytes > self._max_bytes):
            self._bytes -= len(self._lines.popleft()) + 1
        if self._bus.watched:  # every proxied request logs a line: no event for nobody
            self._bus.publish(LogLine(source or self.source, text))
        for parent in self._parents:
            parent.append(text, source=source or self.source)

    def lines(self) -> list[str]:
        return list(self._lines)

    def mark(self) -> int:
        """This moment in the log, for `tail(count, since=mark)`: e.g. taken when an
        upstream starts, so its failure quotes its own lines, not a previous run's."""
        return self._appended

    def tail(self, count: int, *, since: int | None = None) -> list[str]:
        """The last `count` lines; with `since`, only from lines appended after that mark
        (and still retained)."""
        if since is not None:
            count = min(count, self._appended - since)
        return list(self._lines)[-count:] if count > 0 else []

    def history(self) -> str:
        """The whole retained history as text, one line per line."""
        return "".join(line + "\n" for line in self._lines)

    def follow(self, buffer: int = 512) -> Subscription:
        """Live `LogLine`s from now on; slow followers lose lines rather than block writers."""
        return self._bus.subscribe(buffer)
