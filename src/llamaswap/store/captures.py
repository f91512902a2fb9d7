"""Request/response captures (`captureBuffer`): what a metered request sent and got back.

Kept only in memory, in a ring bounded by bytes in total (captureBuffer MB, as in
llama-swap): adding one evicts the oldest until it fits, and one larger than the whole
ring is not kept. A capture's id is its activity row's id. The JSON is llama-swap's
`ReqRespCapture`: bodies are base64 strings (Go's encoding of []byte).

A capture is kept as the request left it (bodies as bytes, headers as text with
credentials redacted) and turned into JSON only when someone asks for it: llama-swap
compresses every capture as it is taken, which here cost more CPU per request than the
rest of the proxy's own work. The ring counts the bytes it holds, so it keeps fewer
captures per MB than a compressed one would.

The response body comes from the proxy's `Exchange.tail`: with captures on it is a
`CaptureTail`, which ignores the proxy's trimming of the tail until `limit` bytes, so a
response up to that size is kept whole (beyond it, the end is kept and
`resp_truncated` says so).
"""

from __future__ import annotations

import base64
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, SupportsIndex

from multidict import MultiDict

from llamaswap.runtime.events import RequestCapture
from llamaswap.shown_headers import REDACTED, SENSITIVE, header_map

MIB = 1024 * 1024
# Per-request ceiling on the response kept while it streams (the ring may be smaller).
MAX_CAPTURED_RESPONSE = 8 * MIB

# Routes with big binary bodies keep less (llama-swap's captureFieldsByPath):
# (request body, response headers, response body); request headers are always kept.
FIELDS_BY_PATH: dict[str, tuple[bool, bool, bool]] = {
    "/v1/audio/speech": (True, True, False),
    "/v1/audio/voices": (False, True, True),
    "/v1/audio/transcriptions": (False, True, True),
    "/v1/images/generations": (True, True, False),
    "/v1/images/edits": (False, True, False),
    "/sdapi/v1/txt2img": (True, True, False),
    "/sdapi/v1/img2img": (False, True, False),
}
ALL_FIELDS = (True, True, True)


class CaptureTail(bytearray):
    """An `Exchange.tail` that keeps up to `limit` bytes instead of the proxy's short tail.

    The proxy appends each chunk (`tail += chunk`) and trims the front now and then
    (`del tail[:-n]`); trims are ignored until the buffer passes `limit`, then it keeps
    its last `limit` bytes."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.dropped = 0

    def __delitem__(self, key: SupportsIndex | slice) -> None:
        if len(self) <= self.limit:
            return
        excess = len(self) - self.limit
        self.dropped += excess
        super().__delitem__(slice(0, excess))


def capture_limit(capture_buffer_mb: int) -> int:
    return min(capture_buffer_mb * MIB, MAX_CAPTURED_RESPONSE)


# A kept capture: (path, request header text, request body, response header text,
# response body, bytes the client got). Only bytes, text and an int: the collector
# never has to walk thousands of kept header maps.
Kept = tuple[str, bytes, bytes, bytes, bytes, int]


def pack(path: str, capture: RequestCapture) -> Kept:
    """A capture as it is kept: the headers as `name:value` lines, credentials redacted."""
    return (
        path,
        _header_text(capture.request_headers),
        capture.request_body,
        _header_text(capture.response_headers),
        capture.response_body,
        capture.response_bytes,
    )


def _header_text(headers: Mapping[str, str]) -> bytes:
    """`name:value` lines, credentials already replaced (no secret sits in the ring)."""
    lines = [
        f"{name}:{REDACTED if name.lower() in SENSITIVE else value}"
        for name, value in headers.items()
    ]
    return "\n".join(lines).encode("utf-8", "surrogateescape")


def _header_pairs(text: bytes) -> list[tuple[str, str]]:
    lines = text.decode("utf-8", "surrogateescape").split("\n") if text else []
    return [(name, value) for name, _, value in (line.partition(":") for line in lines)]


def footprint(kept: Kept) -> int:
    """The bytes a kept capture holds (its texts and bodies, and a little for the rest)."""
    return len(kept[1]) + len(kept[2]) + len(kept[3]) + len(kept[4]) + 128


def render(capture_id: int, kept: Kept) -> bytes:
    """The API form (JSON) of one capture."""
    path, request_head, request_body, response_head, response_body, response_bytes = kept
    with_request_body, with_response_headers, with_response_body = FIELDS_BY_PATH.get(
        path, ALL_FIELDS
    )
    response_headers = header_map(MultiDict(_header_pairs(response_head)))
    document: dict[str, Any] = {
        "id": capture_id,
        "req_path": path,
        "req_headers": header_map(MultiDict(_header_pairs(request_head))),
        "req_body": _b64(request_body) if with_request_body else None,
        "resp_headers": _without_encoding(response_headers) if with_response_headers else None,
        "resp_body": _b64(response_body) if with_response_body else None,
        "resp_bytes": response_bytes,
        "resp_truncated": with_response_body and len(response_body) < response_bytes,
    }
    return json.dumps(document, separators=(",", ":")).encode()


def _b64(data: bytes) -> str | None:
    return base64.b64encode(data).decode("ascii") if data else None


def _without_encoding(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() != "content-encoding"}


class CaptureRing:
    """Captures by id, bounded by their total footprint in bytes (thread-safe)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.size = 0
        self._items: OrderedDict[int, tuple[Kept, int]] = OrderedDict()
        self._lock = threading.Lock()

    def resize(self, capacity: int) -> None:
        with self._lock:
            self.capacity = capacity
            self._evict(0)

    def add(self, capture_id: int, path: str, capture: RequestCapture) -> bool:
        """Keep a capture, evicting the oldest as needed; False when it can never fit."""
        kept = pack(path, capture)
        size = footprint(kept)
        with self._lock:
            if size > self.capacity:
                return False
            self._evict(size)
            self._items[capture_id] = (kept, size)
            self.size += size
            return True

    def _evict(self, room: int) -> None:
        while self._items and self.size + room > self.capacity:
            _, (_, size) = self._items.popitem(last=False)
            self.size -= size

    def get(self, capture_id: int) -> bytes | None:
        """The capture's JSON, or None when it is not kept."""
        with self._lock:
            item = self._items.get(capture_id)
        return None if item is None else render(capture_id, item[0])

    def __contains__(self, capture_id: object) -> bool:
        with self._lock:
            return capture_id in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
