"""Command-line options of the fake upstream, and the duration syntax they share with requests.

Durations accept plain seconds (`1.5`) and Go durations (`1500ms`, `1m30s`): our own options
speak seconds, while llama-swap's simple-responder, which this fake replaces, took Go durations
(`?wait=100ms`), so tests ported from it keep working unchanged. The simple-responder flag
spellings (`-port`, `-silent`, `-ignore-sig-term`, ...) are accepted for the same reason.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_MODEL = "TheExpectedModel"

_GO_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,  # micro sign
    "\u03bcs": 1e-6,  # greek mu
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_GO_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Seconds from `2`, `0.25`, `250ms` or `1m30s`; ValueError for anything else.

    Negative, infinite and NaN durations are rejected: every caller uses the value as a delay.
    """
    raw = text.strip()
    if not raw:
        raise ValueError("empty duration")
    try:
        seconds = float(raw)
    except ValueError:
        seconds = _parse_go_duration(raw)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"duration must be a finite number of seconds >= 0, got {text!r}")
    return seconds


def _parse_go_duration(raw: str) -> float:
    total, pos = 0.0, 0
    while pos < len(raw):
        match = _GO_PART.match(raw, pos)
        if match is None:
            raise ValueError(f"invalid duration {raw!r} (use seconds, or e.g. 250ms, 1m30s)")
        total += float(match.group(1)) * _GO_UNITS[match.group(2)]
        pos = match.end()
    return total


@dataclass(frozen=True)
class Options:
    """Everything the command line can configure; see `parser()` for the meaning of each."""

    port: int
    host: str = "127.0.0.1"
    model: str = DEFAULT_MODEL
    respond: str = "hi"
    startup_delay: float = 0.0
    ignore_sigterm: bool = False
    exit_after: float | None = None
    chunks: int = 10
    chunk_gap: float = 0.0
    crash_mid_stream: bool = False
    never_healthy: bool = False
    fail_after: int | None = None
    slow_stop: float = 0.0
    silent: bool = False
    reasoning: str = ""
    tool_arguments: str | None = None
    slot_save_path: str = ""
    slots: int = 2
    slot_delay: float = 0.0


def _seconds(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _json_object(text: str) -> str:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return text


def _port(text: str) -> int:
    value = _count(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {value}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m llamaswap.testing.upstream",
        description="Fake OpenAI/Anthropic/llama.cpp-compatible upstream for llamaswap tests.",
        allow_abbrev=False,
    )
    add = p.add_argument
    add("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    add("--port", "-port", type=_port, required=True, help="port to bind; 0 picks a free one")
    add("--model", "-model", default=DEFAULT_MODEL, help="model name to report")
    add("--respond", "-respond", default="hi", help="text every completion answers with")
    add(
        "--startup-delay",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="answer 503 'Loading model' until this long after process start",
    )
    add(
        "--ignore-sigterm",
        "-ignore-sig-term",
        action="store_true",
        help="log 'SIGTERM ignored' and keep running",
    )
    add(
        "--exit-after",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="exit with code 3 this long after process start (0: before binding)",
    )
    add("--chunks", type=_count, default=10, metavar="N", help="content chunks per stream")
    add("--chunk-gap", type=_seconds, default=0.0, metavar="SECONDS", help="pause between chunks")
    add(
        "--crash-mid-stream",
        action="store_true",
        help="os._exit(7) after half the chunks of a streamed response",
    )
    add("--never-healthy", action="store_true", help="/health always answers 503")
    add(
        "--fail-after",
        type=_count,
        default=None,
        metavar="N",
        help="after N successful inference responses, answer 500 on inference endpoints",
    )
    add(
        "--slow-stop",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="on SIGTERM keep serving this long, then exit 0",
    )
    add("--silent", "-silent", action="store_true", help="no per-request log lines")
    add(
        "--reasoning",
        default="",
        metavar="TEXT",
        help="chat answers think this first (llama.cpp's reasoning_content)",
    )
    add(
        "--tool-arguments",
        type=_json_object,
        default=None,
        metavar="JSON",
        help="a chat request that offers tools gets a call to the first one with these "
        "arguments (finish_reason tool_calls)",
    )
    add(
        "--slot-save-path",
        default="",
        metavar="DIR",
        help="serve llama-server's /slots save and restore, with files in DIR",
    )
    add("--slots", type=_count, default=2, metavar="N", help="slots listed by GET /slots")
    add(
        "--slot-delay",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="each slot save or restore takes this long",
    )
    return p


def parse_args(argv: Sequence[str] | None = None) -> Options:
    """Parse the command line; argparse exits with code 2 on a bad option."""
    ns = parser().parse_args(argv)
    return Options(
        port=ns.port,
        host=ns.host,
        model=ns.model,
        respond=ns.respond,
        startup_delay=ns.startup_delay,
        ignore_sigterm=ns.ignore_sigterm,
        exit_after=ns.exit_after,
        chunks=ns.chunks,
        chunk_gap=ns.chunk_gap,
        crash_mid_stream=ns.crash_mid_stream,
        never_healthy=ns.never_healthy,
        fail_after=ns.fail_after,
        slow_stop=ns.slow_stop,
        silent=ns.silent,
        reasoning=ns.reasoning,
        tool_arguments=ns.tool_arguments,
        slot_save_path=ns.slot_save_path,
        slots=ns.slots,
        slot_delay=ns.slot_delay,
    )
