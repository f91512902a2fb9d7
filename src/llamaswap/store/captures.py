"""Request/response captures (`captureBuffer`): what a metered request sent and got back.

Kept only in memory, compressed, in a ring bounded by bytes in total (captureBuffer MB,
as in llama-swap): adding one evicts the oldest until it fits, and one larger than the
whole ring is not kept. A capture's id is its activity row's id. The JSON is llama-swap's
`ReqRespCapture`: bodies are base64 strings (Go's encoding of []byte).

The response body comes from the proxy's `Exchange.tail`: with captures on it is a
`CaptureTail`, which ignores the proxy's trimming of the tail until `limit` bytes, so a
response up to that size is kept whole (beyond it, the end is kept and
`resp_truncated` says so).
"""

from __future__ import annotations

import base64
import json
import threading
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, SupportsIndex

from llamaswap.runtime.events import RequestCapture

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


def encode(capture_id: int, path: str, capture: RequestCapture) -> bytes:
    """The compressed API form of one capture."""
    request_body, response_headers, response_body = FIELDS_BY_PATH.get(path, ALL_FIELDS)
    document: dict[str, Any] = {
        "id": capture_id,
        "req_path": path,
        "req_headers": dict(capture.request_headers),
        "req_body": _b64(capture.request_body) if request_body else None,
        "resp_headers": _without_encoding(capture.response_headers) if response_headers else None,
        "resp_body": _b64(capture.response_body) if response_body else None,
        "resp_bytes": capture.response_bytes,
        "resp_truncated": response_body and len(capture.response_body) < capture.response_bytes,
    }
    # level 1: a few times faster than the default and most of its gain on JSON text
    return zlib.compress(json.dumps(document, separators=(",", ":")).encode(), 1)


def decode(blob: bytes) -> bytes:
    return zlib.decompress(blob)


def _b64(data: bytes) -> str | None:
    return base64.b64encode(data).decode("ascii") if data else None


def _without_encoding(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() != "content-encoding"}


class CaptureRing:
    """Compressed captures by id, bounded by their total size in bytes (thread-safe)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.size = 0
        self._items: OrderedDict[int, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def resize(self, capacity: int) -> None:
        with self._lock:
            self.capacity = capacity
            self._evict(0)

    def add(self, capture_id: int, blob: bytes) -> bool:
        """Keep `blob`, evicting the oldest as needed; False when it can never fit."""
        with self._lock:
            if len(blob) > self.capacity:
                return False
            self._evict(len(blob))
            self._items[capture_id] = blob
            self.size += len(blob)
            return True

    def _evict(self, room: int) -> None:
        while self._items and self.size + room > self.capacity:
            _, oldest = self._items.popitem(last=False)
            self.size -= len(oldest)

    def get(self, capture_id: int) -> bytes | None:
        with self._lock:
            return self._items.get(capture_id)

    def __contains__(self, capture_id: object) -> bool:
        with self._lock:
            return capture_id in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
