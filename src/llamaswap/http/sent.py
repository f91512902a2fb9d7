"""An answer written to the client in one write, head and body, by the relay itself.

Most non-streamed answers arrive whole with their head. aiohttp's Response would copy
the headers, prepare them, serialize them through its writer and coalesce them with
the body; here the head is put together once, as aiohttp would have sent it (status
line for the client's HTTP version, Content-Length, default Content-Type, Date,
Server, the Connection header its keep-alive rule gives, and whatever the
`on_response_prepare` hooks, such as CORS, change), and written with the body. The
handler returns a `SentResponse`, which tells aiohttp the answer is complete.
"""

from __future__ import annotations

import time
from email.utils import formatdate

from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE, HttpVersion10, HttpVersion11

EMPTY_BODY_STATUSES = frozenset({204, 304})
LARGE_BODY = 16 * 1024  # written with writelines (no copy) from this size

_date: tuple[int, str] = (0, "")


def http_date() -> str:
    """The Date header, formatted once a second."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, formatdate(now, usegmt=True))
    return _date[1]


class SentResponse(web.StreamResponse):
    """An answer already on its way to the client: aiohttp's `prepare` and `write_eof`
    (called once the handler returns) have nothing left to do; it reads `keep_alive`
    to decide whether the connection stays open."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(status=status, reason=reason)
        self._sent = False
        self._sent_keep_alive = False
        self._sent_length = 0

    @property
    def prepared(self) -> bool:
        return self._sent

    @property
    def keep_alive(self) -> bool | None:
        return self._sent_keep_alive

    @property
    def body_length(self) -> int:
        return self._sent_length

    async def prepare(self, request: web.BaseRequest) -> None:
        return None

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        raise RuntimeError("this answer was written whole")

    async def write_eof(self, data: bytes = b"") -> None:
        return None

    async def send(self, request: web.Request, body: bytes) -> int:
        """Run the prepare hooks, then write head and body; returns the bytes written
        (the caller waits for the transport to drain if it must)."""
        headers = self.headers
        version = request.version
        if self.status in EMPTY_BODY_STATUSES:
            body = b""
            headers.popall("Content-Length", None)
        else:
            headers["Content-Length"] = str(len(body))
            if body:
                headers.setdefault("Content-Type", "application/octet-stream")
        if "Date" not in headers:
            headers["Date"] = http_date()
        headers.setdefault("Server", SERVER_SOFTWARE)
        keep_alive = request.keep_alive
        if "Connection" not in headers:
            if keep_alive and version == HttpVersion10:
                headers["Connection"] = "keep-alive"
            elif not keep_alive and version == HttpVersion11:
                headers["Connection"] = "close"
        for app in request.match_info.apps:
            await app.on_response_prepare.send(request, self)
        lines = [f"HTTP/{version.major}.{version.minor} {self.status} {self.reason}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append("\r\n")
        text = "\r\n".join(lines)
        # a CR or LF inside a header would split it (aiohttp's writer refuses them too)
        if text.count("\n") != len(lines) or text.count("\r") != len(lines):
            raise ValueError("forbidden control character in a response header")
        head = text.encode("utf-8", "surrogateescape")
        transport = request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the client closed the connection")
        if len(body) >= LARGE_BODY:
            transport.writelines((head, body))
        else:
            transport.write(head + body)
        self._sent = True
        self._sent_keep_alive = bool(keep_alive)
        self._sent_length = len(body)
        written = len(head) + len(body)
        request.writer.output_size += written
        return written
