"""logLevel, logTimeFormat and logToStdout are honoured; colour only on a terminal."""

from __future__ import annotations

import io
import logging
import re

import pytest

from llamaswap import logsetup
from llamaswap.config import parse_config
from llamaswap.runtime.logs import LogRing


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def configured(yaml: str, stream: io.StringIO) -> LogRing:
    ring = LogRing("proxy")
    logsetup.configure(parse_config(yaml), ring, stream)
    return ring


@pytest.fixture(autouse=True)
def restore_logging() -> object:
    yield
    logging.getLogger("llamaswap").handlers.clear()


def test_proxy_lines_go_to_the_ring_and_stdout_by_default() -> None:
    out = io.StringIO()
    ring = configured("models: {}", out)
    logging.getLogger("llamaswap.test").info("hello")
    assert ring.lines() == ["[INFO] hello"]
    assert out.getvalue() == "[INFO] hello\n"


@pytest.mark.parametrize(
    ("mode", "printed"), [("proxy", True), ("both", True), ("upstream", False), ("none", False)]
)
def test_log_to_stdout_modes(mode: str, printed: bool) -> None:
    out = io.StringIO()
    ring = configured(f"logToStdout: {mode}", out)
    logging.getLogger("llamaswap.test").info("hello")
    assert ring.lines() == ["[INFO] hello"], "/logs always has the proxy lines"
    assert bool(out.getvalue()) is printed
    assert logsetup.echoes_upstream(parse_config(f"logToStdout: {mode}")) is (
        mode in ("upstream", "both")
    )


def test_log_level_filters() -> None:
    out = io.StringIO()
    ring = configured("logLevel: warn", out)
    logger = logging.getLogger("llamaswap.test")
    logger.info("quiet")
    logger.warning("loud")
    assert ring.lines() == ["[WARNING] loud"]


def test_log_time_format_prefixes_a_timestamp() -> None:
    out = io.StringIO()
    configured("logTimeFormat: rfc3339", out)
    logging.getLogger("llamaswap.test").info("stamped")
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} \[INFO\] stamped$", out.getvalue())


def test_colour_only_on_a_terminal() -> None:
    terminal = Terminal()
    ring = configured("models: {}", terminal)
    logging.getLogger("llamaswap.test").error("red")
    assert "\033[31mERROR\033[0m" in terminal.getvalue()
    assert ring.lines() == ["[ERROR] red"], "the ring never gets escape codes"
