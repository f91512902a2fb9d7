"""Lines about misbehaving clients are rate-limited: a burst per window, then one line
that says how many were left out (logsetup.RateLimited on `llamaswap.clients`)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import anyio
import pytest

from llamaswap import logsetup
from llamaswap.config import parse_config
from llamaswap.runtime.logs import LogRing


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.summary = anyio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        if getattr(record, "rate_summary", False):
            self.summary.set()


@pytest.fixture
def limited() -> Iterator[tuple[logging.Logger, Collect]]:
    logger = logging.getLogger("llamaswap.test.limited")
    collect = Collect()
    logger.addHandler(collect)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        yield logger, collect
    finally:
        logger.removeHandler(collect)
        logger.filters.clear()


def test_a_burst_passes_then_lines_are_counted_and_summarised(
    limited: tuple[logging.Logger, Collect],
) -> None:
    logger, collect = limited
    clock = Clock()
    logger.addFilter(logsetup.RateLimited(logger, burst=3, window=10.0, clock=clock))
    for i in range(10):
        logger.info("bad request %d", i)
    assert collect.lines == ["bad request 0", "bad request 1", "bad request 2"]
    clock.now += 10.0
    logger.info("bad request 10")
    assert collect.lines[3:] == [
        "7 more lines about misbehaving clients in the last 10 s were not logged",
        "bad request 10",
    ]


def test_nothing_left_out_means_no_summary(limited: tuple[logging.Logger, Collect]) -> None:
    logger, collect = limited
    clock = Clock()
    logger.addFilter(logsetup.RateLimited(logger, burst=3, window=10.0, clock=clock))
    logger.info("one")
    clock.now += 60
    logger.info("two")
    assert collect.lines == ["one", "two"]


@pytest.mark.anyio
async def test_the_summary_comes_when_the_window_ends(
    limited: tuple[logging.Logger, Collect],
) -> None:
    """No further bad request is needed for the count to be reported."""
    logger, collect = limited
    logger.addFilter(logsetup.RateLimited(logger, burst=1, window=0.05))
    for _ in range(5):
        logger.info("bad request")
    with anyio.fail_after(5):
        await collect.summary.wait()
    assert collect.lines == [
        "bad request",
        "4 more lines about misbehaving clients in the last 0.05 s were not logged",
    ]


def test_configure_installs_one_fresh_limit_on_the_client_logger() -> None:
    ring = LogRing("proxy")
    config = parse_config("logToStdout: none\nmodels: {}")
    clients = logging.getLogger(logsetup.CLIENT_LOG)
    try:
        logsetup.configure(config, ring, io.StringIO())
        for _ in range(logsetup.CLIENT_LINES_BURST + 5):
            clients.info("bad request from 127.0.0.1: line too long")
        assert len(ring.lines()) == logsetup.CLIENT_LINES_BURST
        logsetup.configure(config, ring, io.StringIO())  # a reload reports what was left out
        limits = [f for f in clients.filters if isinstance(f, logsetup.RateLimited)]
        assert len(limits) == 1
        assert ring.lines()[-1] == (
            "[WARNING] 5 more lines about misbehaving clients in the last 60 s were not logged"
        )
    finally:
        logging.getLogger("llamaswap").handlers.clear()
