"""Request traces for `llamaswap simulate`: read, write and generate them.

A trace is JSON lines, one request each: `{"t": seconds, "model": id, "duration":
seconds}`, where `t` is the arrival on the virtual clock and `duration` how long the
request holds its model once granted; an optional `"key"` names the API key it came
with (a `name` from `apiKeys`: its concurrencyLimit and turn apply). Generated traces
draw every number from one seeded `random.Random`, so a seed always gives the same
trace.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_ZIPF = 1.1
DEFAULT_RATE = 0.05  # requests per second: one every 20 s on average
DEFAULT_DURATION = 10.0  # mean seconds a request holds its model


class TraceError(Exception):
    """A trace that cannot be replayed; the message names the file and line."""


@dataclass(frozen=True)
class TraceRequest:
    """One request of a trace: arrives at `t`, holds `model` for `duration` seconds."""

    t: float
    model: str
    duration: float = 0.0
    key: str = ""

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {"t": self.t, "model": self.model, "duration": self.duration}
        if self.key:
            record["key"] = self.key
        return record


def _number(record: dict[str, Any], key: str, where: str, default: float | None) -> float:
    value = record.get(key, default)
    if value is None:
        raise TraceError(f"{where}: missing {key!r}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TraceError(f"{where}: {key!r} must be a number, got {value!r}")
    if value < 0:
        raise TraceError(f"{where}: {key!r} must be >= 0, got {value!r}")
    return float(value)


def parse_trace(lines: Iterable[str], source: str = "<trace>") -> list[TraceRequest]:
    """Parse JSON lines (blank lines and `#` comments are skipped), sorted by arrival.

    Requests with the same `t` keep their order in the file.
    """
    requests: list[TraceRequest] = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        where = f"{source}:{number}"
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TraceError(f"{where}: not JSON: {exc.msg}") from None
        if not isinstance(record, dict):
            raise TraceError(f'{where}: expected an object like {{"t": 0, "model": "m"}}')
        model = record.get("model")
        if not isinstance(model, str) or not model:
            raise TraceError(f"{where}: 'model' must be a non-empty string")
        key = record.get("key", "")
        if not isinstance(key, str):
            raise TraceError(f"{where}: 'key' must be a string (a key's name), got {key!r}")
        requests.append(
            TraceRequest(
                _number(record, "t", where, None),
                model,
                _number(record, "duration", where, 0.0),
                key,
            )
        )
    return sorted(requests, key=lambda r: r.t)


def read_trace(path: str | Path) -> list[TraceRequest]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise TraceError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_trace(text.splitlines(), str(path))


def format_trace(requests: Iterable[TraceRequest]) -> str:
    return "".join(json.dumps(r.to_json()) + "\n" for r in requests)


def synthetic_trace(
    count: int,
    models: Sequence[str],
    *,
    zipf: float = DEFAULT_ZIPF,
    seed: int = 0,
    rate: float = DEFAULT_RATE,
    mean_duration: float = DEFAULT_DURATION,
) -> list[TraceRequest]:
    """`count` requests over `models`, popularity Zipf(`zipf`) by position in `models`.

    Arrivals are a Poisson process of `rate` per second, durations exponential with
    mean `mean_duration`; times are rounded to milliseconds so the trace reads well
    when written out.
    """
    if count < 0:
        raise ValueError("count must be >= 0")
    if not models:
        raise ValueError("a synthetic trace needs at least one model")
    if rate <= 0 or mean_duration < 0 or zipf < 0:
        raise ValueError("rate must be > 0, mean duration and zipf >= 0")
    rng = random.Random(seed)
    weights = [1.0 / (rank**zipf) for rank in range(1, len(models) + 1)]
    now = 0.0
    requests = []
    for _ in range(count):
        now += rng.expovariate(rate)
        model = rng.choices(models, weights)[0]
        duration = rng.expovariate(1.0 / mean_duration) if mean_duration > 0 else 0.0
        requests.append(TraceRequest(round(now, 3), model, round(duration, 3)))
    return requests
