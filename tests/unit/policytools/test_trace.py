"""Traces: JSON lines in, JSON lines out, and seeded synthetic ones."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import pytest

from llamaswap.policytools.trace import (
    TraceError,
    TraceRequest,
    format_trace,
    parse_trace,
    read_trace,
    synthetic_trace,
)


def test_parse_sorts_by_arrival_and_keeps_ties_in_file_order() -> None:
    lines = [
        '{"t": 5, "model": "b", "duration": 1}',
        "",
        "# a comment",
        '{"t": 0, "model": "a"}',
        '{"t": 5, "model": "c", "duration": 2.5}',
    ]
    assert parse_trace(lines) == [
        TraceRequest(0.0, "a", 0.0),
        TraceRequest(5.0, "b", 1.0),
        TraceRequest(5.0, "c", 2.5),
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{nope", "not JSON"),
        ("[1, 2]", "expected an object"),
        ('{"t": 1}', "'model' must be a non-empty string"),
        ('{"model": "a"}', "missing 't'"),
        ('{"t": "soon", "model": "a"}', "'t' must be a number"),
        ('{"t": true, "model": "a"}', "'t' must be a number"),
        ('{"t": 1, "model": "a", "duration": -2}', "'duration' must be >= 0"),
    ],
)
def test_parse_names_the_line_of_a_bad_request(line: str, message: str) -> None:
    with pytest.raises(TraceError) as caught:
        parse_trace(['{"t": 0, "model": "a"}', line], "trace.jsonl")
    assert str(caught.value).startswith("trace.jsonl:2: ")
    assert message in str(caught.value)


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    trace = synthetic_trace(50, ["a", "b"], seed=1)
    path = tmp_path / "trace.jsonl"
    path.write_text(format_trace(trace))
    assert read_trace(path) == trace


def test_an_unreadable_trace_is_a_trace_error(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="cannot read"):
        read_trace(tmp_path / "missing.jsonl")


def test_synthetic_traces_are_seeded_and_zipf_skewed() -> None:
    models = ["m1", "m2", "m3", "m4"]
    trace = synthetic_trace(2000, models, zipf=1.5, seed=5)
    assert trace == synthetic_trace(2000, models, zipf=1.5, seed=5)
    assert trace != synthetic_trace(2000, models, zipf=1.5, seed=6)
    counts = Counter(r.model for r in trace)
    assert counts["m1"] > counts["m2"] > counts["m3"] > counts["m4"]
    assert all(a.t <= b.t for a, b in itertools.pairwise(trace))
    flat = Counter(r.model for r in synthetic_trace(2000, models, zipf=0, seed=5))
    assert max(flat.values()) < 2 * min(flat.values())


def test_synthetic_rejects_impossible_settings() -> None:
    with pytest.raises(ValueError):
        synthetic_trace(5, [])
    with pytest.raises(ValueError):
        synthetic_trace(5, ["a"], rate=0)
