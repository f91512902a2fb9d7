"""The capture ring and the capturing tail."""

from __future__ import annotations

import base64
import json

from llamaswap.runtime.events import RequestCapture
from llamaswap.store.captures import CaptureRing, CaptureTail, footprint, pack, render


def capture(body: bytes) -> RequestCapture:
    return RequestCapture({}, body, {}, b"", 0)


def test_the_ring_is_bounded_by_bytes_and_evicts_the_oldest() -> None:
    size = footprint(pack("/p", capture(b"aaaa")))
    ring = CaptureRing(2 * size + 2)
    assert ring.add(1, "/p", capture(b"aaaa")) and ring.add(2, "/p", capture(b"bbbb"))
    assert ring.add(3, "/p", capture(b"cccc"))  # three do not fit: capture 1 goes
    assert 1 not in ring and 2 in ring and 3 in ring and ring.size == 2 * size
    assert not ring.add(4, "/p", capture(b"x" * (2 * size)))  # can never fit
    ring.resize(size)
    assert len(ring) == 1 and 3 in ring
    shown = ring.get(3)
    assert shown is not None and base64.b64decode(json.loads(shown)["req_body"]) == b"cccc"
    assert ring.get(2) is None


def test_a_capture_counts_its_bodies_and_headers() -> None:
    small = footprint(pack("/p", RequestCapture({"A": "b"}, b"x", {}, b"", 0)))
    big = footprint(
        pack("/p", RequestCapture({"A": "b" * 1000}, b"x" * 1000, {}, b"y" * 1000, 2000))
    )
    assert big - small == 999 + 999 + 1000


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
        {
            "authorization": "Bearer sk-secret",
            "x-api-key": "sk-secret",
            "user-agent": "t",
            "host": "127.0.0.1:8080",
        },
        b'{"a":1}',
        {"content-encoding": "gzip", "X": "y"},
        b"ok",
        10,
    )
    document = json.loads(render(7, pack("/v1/chat/completions", capture)))
    assert document["id"] == 7 and document["req_path"] == "/v1/chat/completions"
    assert document["req_headers"] == {
        "Authorization": "[REDACTED]",
        "X-Api-Key": "[REDACTED]",
        "User-Agent": "t",
        "Host": "127.0.0.1:8080",
    }
    assert base64.b64decode(document["req_body"]) == b'{"a":1}'
    assert document["resp_headers"] == {"X": "y"}
    assert document["resp_truncated"] is True and document["resp_bytes"] == 10


def test_binary_routes_keep_less() -> None:
    capture = RequestCapture({}, b"prompt", {}, b"\x89PNG", 4)
    document = json.loads(render(1, pack("/v1/images/generations", capture)))
    assert document["req_body"] and document["resp_body"] is None


def test_no_credential_is_kept_in_the_ring() -> None:
    capture = RequestCapture(
        {"Authorization": "Bearer sk-secret", "Cookie": "s=sk-secret"}, b"", {}, b"", 0
    )
    kept = pack("/v1/chat/completions", capture)
    assert b"sk-secret" not in b"".join(part for part in kept if isinstance(part, bytes))
