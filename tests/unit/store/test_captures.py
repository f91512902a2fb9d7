"""The capture ring and the capturing tail."""

from __future__ import annotations

import base64
import json

from llamaswap.runtime.events import RequestCapture
from llamaswap.store.captures import CaptureRing, CaptureTail, decode, encode


def test_the_ring_is_bounded_by_bytes_and_evicts_the_oldest() -> None:
    ring = CaptureRing(10)
    assert ring.add(1, b"aaaa") and ring.add(2, b"bbbb")
    assert ring.add(3, b"cccc")  # 12 > 10: capture 1 goes
    assert 1 not in ring and 2 in ring and 3 in ring and ring.size == 8
    assert not ring.add(4, b"x" * 11)  # can never fit
    ring.resize(4)
    assert len(ring) == 1 and ring.get(3) == b"cccc"


def test_the_tail_ignores_the_proxys_trims_until_its_limit() -> None:
    tail = CaptureTail(limit=10)
    tail += b"abcdef"
    del tail[:-2]  # the proxy's trim: ignored, the capture wants everything
    assert bytes(tail) == b"abcdef"
    tail += b"ghijkl"
    del tail[:-2]
    assert bytes(tail) == b"cdefghijkl" and tail.dropped == 2
    assert bytes(tail[-4:]) == b"ijkl"  # the proxy still reads its tail


def test_captures_are_llama_swaps_shape_with_base64_bodies() -> None:
    capture = RequestCapture(
        {"Authorization": "[REDACTED]"},
        b'{"a":1}',
        {"Content-Encoding": "gzip", "X": "y"},
        b"ok",
        10,
    )
    document = json.loads(decode(encode(7, "/v1/chat/completions", capture)))
    assert document["id"] == 7 and document["req_path"] == "/v1/chat/completions"
    assert base64.b64decode(document["req_body"]) == b'{"a":1}'
    assert document["resp_headers"] == {"X": "y"}
    assert document["resp_truncated"] is True and document["resp_bytes"] == 10


def test_binary_routes_keep_less() -> None:
    capture = RequestCapture({}, b"prompt", {}, b"\x89PNG", 4)
    document = json.loads(decode(encode(1, "/v1/images/generations", capture)))
    assert document["req_body"] and document["resp_body"] is None
