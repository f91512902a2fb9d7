"""`keep_alive` is read as Ollama reads it: Go's `time.ParseDuration` for strings (cases
from Go's own parseDurationTests), seconds for numbers, negative = forever."""

from __future__ import annotations

import pytest

from llamaswap.http.ollama.durations import (
    FOREVER,
    DurationError,
    keep_alive_seconds,
    parse_go_duration,
)

NS, US, MS, S = 1, 1_000, 1_000_000, 1_000_000_000
M, H = 60 * S, 3600 * S


@pytest.mark.parametrize(
    ("text", "nanoseconds"),
    [
        ("0", 0),
        ("5s", 5 * S),
        ("1478s", 1478 * S),
        ("-5s", -5 * S),
        ("+5s", 5 * S),
        ("-0", 0),
        ("+0", 0),
        ("5.0s", 5 * S),
        ("5.6s", 5 * S + 600 * MS),
        ("5.s", 5 * S),
        (".5s", 500 * MS),
        ("1.004s", S + 4 * MS),
        ("100.00100s", 100 * S + MS),
        ("10ns", 10 * NS),
        ("11us", 11 * US),
        ("12\u00b5s", 12 * US),
        ("12\u03bcs", 12 * US),
        ("13ms", 13 * MS),
        ("15m", 15 * M),
        ("16h", 16 * H),
        ("3h30m", 3 * H + 30 * M),
        ("1h30m", 90 * M),
        ("10.5s4m", 4 * M + 10 * S + 500 * MS),
        ("-2m3.4s", -(2 * M + 3 * S + 400 * MS)),
        ("1h2m3s4ms5us6ns", H + 2 * M + 3 * S + 4 * MS + 5 * US + 6 * NS),
        ("39h9m14.425s", 39 * H + 9 * M + 14 * S + 425 * MS),
        ("52763797000ns", 52763797000),
        ("0.3333333333333333333h", 20 * M),
        ("9007199254740993ns", (1 << 53) + 1),
        ("9223372036854775807ns", (1 << 63) - 1),
        ("9223372036854775.807us", (1 << 63) - 1),
        ("9223372036s854ms775us807ns", (1 << 63) - 1),
        ("-9223372036854775808ns", -(1 << 63)),
        ("-2562047h47m16.854775808s", -(1 << 63)),
        ("0.100000000000000000000h", 6 * M),
        ("0.830103483285477580700h", 49 * M + 48 * S + 372539827),
    ],
)
def test_go_durations(text: str, nanoseconds: int) -> None:
    assert parse_go_duration(text) == nanoseconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'time: invalid duration ""'),
        ("3", 'time: missing unit in duration "3"'),
        ("300", 'time: missing unit in duration "300"'),
        ("-", 'time: invalid duration "-"'),
        ("s", 'time: invalid duration "s"'),
        (".", 'time: invalid duration "."'),
        ("-.", 'time: invalid duration "-."'),
        (".s", 'time: invalid duration ".s"'),
        ("+.s", 'time: invalid duration "+.s"'),
        ("1d", 'time: unknown unit "d" in duration "1d"'),
        ("5 m", 'time: unknown unit " m" in duration "5 m"'),
        ("\ufffd", 'time: invalid duration "\\xef\\xbf\\xbd"'),
        ("9223372036854775810ns", 'time: invalid duration "9223372036854775810ns"'),
        ("9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"'),
        ("-9223372036854775809ns", 'time: invalid duration "-9223372036854775809ns"'),
        ("9223372036854776us", 'time: invalid duration "9223372036854776us"'),
        ("3000000h", 'time: invalid duration "3000000h"'),
        ("9223372036854775.808us", 'time: invalid duration "9223372036854775.808us"'),
        ("9223372036854ms775us808ns", 'time: invalid duration "9223372036854ms775us808ns"'),
    ],
)
def test_go_duration_errors_say_what_go_says(text: str, message: str) -> None:
    with pytest.raises(DurationError) as caught:
        parse_go_duration(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("10s", 10.0),
        ("1.5s", 1.5),
        ("0", 0.0),
        ("0s", 0.0),
        ("-1m", FOREVER),
        ("-1s", FOREVER),
        (0, 0.0),
        (0.0, 0.0),
        (300, 300.0),
        (2.5, 2.5),
        (-1, FOREVER),
        (-0.5, FOREVER),
        (1e300, FOREVER),  # beyond Go's int64 nanoseconds
    ],
)
def test_keep_alive_as_the_router_takes_it(value: object, seconds: float | None) -> None:
    assert keep_alive_seconds(value) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "Unsupported type: 'bool'"),
        ([1], "Unsupported type: '[]interface {}'"),
        ({"a": 1}, "Unsupported type: 'map[string]interface {}'"),
        ("300", 'time: missing unit in duration "300"'),
        ("forever", 'time: invalid duration "forever"'),
    ],
)
def test_keep_alive_refusals_are_ollamas(value: object, message: str) -> None:
    with pytest.raises(DurationError) as caught:
        keep_alive_seconds(value)
    assert str(caught.value) == message
