"""LogRing marks: the lines since a moment, for a start failure that quotes only its own
attempt's output (issue 13, item 6)."""

from __future__ import annotations

from llamaswap.runtime.logs import LogRing


def test_tail_since_a_mark_leaves_out_earlier_lines() -> None:
    ring = LogRing("m")
    for line in ("first attempt", "first attempt failed"):
        ring.append(line)
    mark = ring.mark()
    assert ring.tail(5, since=mark) == []
    ring.append("second attempt")
    assert ring.tail(5, since=mark) == ["second attempt"]
    assert ring.tail(5) == ["first attempt", "first attempt failed", "second attempt"]


def test_tail_since_keeps_the_count_limit() -> None:
    ring = LogRing("m")
    mark = ring.mark()
    for index in range(10):
        ring.append(f"line {index}")
    assert ring.tail(3, since=mark) == ["line 7", "line 8", "line 9"]
    assert ring.tail(0, since=mark) == []


def test_a_mark_older_than_the_retained_lines_gives_what_is_left() -> None:
    ring = LogRing("m", max_lines=3)
    mark = ring.mark()
    for index in range(5):
        ring.append(f"line {index}")
    assert ring.tail(10, since=mark) == ["line 2", "line 3", "line 4"]


def test_marks_are_per_ring_even_with_parents() -> None:
    combined = LogRing("combined")
    a, b = LogRing("a", parents=(combined,)), LogRing("b", parents=(combined,))
    a.append("a0")
    mark = b.mark()
    b.append("b0")
    assert b.tail(5, since=mark) == ["b0"]
    assert combined.tail(5, since=combined.mark() - 1) == ["b0"]
