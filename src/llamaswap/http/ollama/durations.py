"""Ollama's `keep_alive`: Go durations and seconds, read exactly as Ollama reads them.

Ollama decodes `keep_alive` with `api.Duration.UnmarshalJSON`: a JSON number is seconds
(negative: forever), a string goes through Go's `time.ParseDuration` (so `"300"` without
a unit is an error, `"0"` is not; negative: forever), `null` means "not given" and any
other type is an error. `parse_go_duration` is a transcription of Go's parser (integer
nanoseconds, the same overflow rules and error texts), so a value Ollama accepts is
accepted here with the same meaning and a value it refuses is refused with its message.
"""

from __future__ import annotations

import math
from typing import Any

FOREVER = -1.0  # what router.lease(keep_alive=...) takes for "never unload"
_MAX = 1 << 63  # Go's int64 overflow bound, in nanoseconds

_UNITS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}


class DurationError(ValueError):
    """A `keep_alive` Ollama would refuse (400); the message is Ollama's."""


def _go_quote(text: str) -> str:
    """The quoting of Go's time package: `"` and `\\` escaped, other bytes that are not
    printable ASCII as `\\xNN` (UTF-8)."""
    out = ['"']
    for char in text:
        if char < " " or char >= "\x80":
            out.extend(f"\\x{byte:02x}" for byte in char.encode("utf-8", "surrogatepass"))
        elif char in '"\\':
            out.append("\\" + char)
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _leading_int(text: str) -> tuple[int, str]:
    value, i = 0, 0
    while i < len(text) and "0" <= text[i] <= "9":
        if value > _MAX // 10:
            raise OverflowError
        value = value * 10 + int(text[i])
        if value > _MAX:
            raise OverflowError
        i += 1
    return value, text[i:]


def _leading_fraction(text: str) -> tuple[int, float, str]:
    """Digits after the point: (value, scale, rest); digits past int64 are dropped."""
    value, scale, i, overflow = 0, 1.0, 0, False
    while i < len(text) and "0" <= text[i] <= "9":
        if not overflow:
            if value > (_MAX - 1) // 10:
                overflow = True
            else:
                candidate = value * 10 + int(text[i])
                if candidate > _MAX:
                    overflow = True
                else:
                    value = candidate
                    scale *= 10
        i += 1
    return value, scale, text[i:]


def parse_go_duration(text: str) -> int:
    """Nanoseconds from a Go duration (`"1h30m"`, `"-5m"`, `"1.5s"`, `"0"`), as
    `time.ParseDuration` computes them; DurationError with Go's message otherwise."""
    invalid = DurationError(f"time: invalid duration {_go_quote(text)}")
    rest = text
    negative = False
    if rest[:1] in ("-", "+"):
        negative = rest[0] == "-"
        rest = rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise invalid
    total = 0
    while rest:
        if not (rest[0] == "." or "0" <= rest[0] <= "9"):
            raise invalid
        before = len(rest)
        try:
            whole, rest = _leading_int(rest)
        except OverflowError:
            raise invalid from None
        has_whole = len(rest) != before
        fraction, scale, has_fraction = 0, 1.0, False
        if rest[:1] == ".":
            rest = rest[1:]
            before = len(rest)
            fraction, scale, rest = _leading_fraction(rest)
            has_fraction = len(rest) != before
        if not has_whole and not has_fraction:
            raise invalid
        end = 0
        while end < len(rest) and not (rest[end] == "." or "0" <= rest[end] <= "9"):
            end += 1
        if end == 0:
            raise DurationError(f"time: missing unit in duration {_go_quote(text)}")
        unit_name, rest = rest[:end], rest[end:]
        unit = _UNITS.get(unit_name)
        if unit is None:
            raise DurationError(
                f"time: unknown unit {_go_quote(unit_name)} in duration {_go_quote(text)}"
            )
        if whole > _MAX // unit:
            raise invalid
        whole *= unit
        if fraction > 0:
            whole += int(float(fraction) * (float(unit) / scale))
            if whole > _MAX:
                raise invalid
        total += whole
        if total > _MAX:
            raise invalid
    if negative:
        return -total
    if total > _MAX - 1:
        raise invalid
    return total


def keep_alive_seconds(value: Any) -> float | None:
    """The `keep_alive` of a request as `router.lease(keep_alive=...)` takes it: seconds,
    0 to unload once idle, FOREVER for a negative duration, None when not given."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        kind = {bool: "bool", list: "[]interface {}", dict: "map[string]interface {}"}
        raise DurationError(f"Unsupported type: '{kind.get(type(value), type(value).__name__)}'")
    if isinstance(value, str):
        nanoseconds = parse_go_duration(value)
        return FOREVER if nanoseconds < 0 else nanoseconds / 1e9
    if not math.isfinite(value):
        raise DurationError(f"Unsupported value: {value!r}")
    if value < 0:
        return FOREVER
    scaled = value * 1e9
    if scaled >= _MAX:  # past Go's int64: as good as forever
        return FOREVER
    return int(scaled) / 1e9
