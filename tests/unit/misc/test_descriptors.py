"""maxConnections needs open files: the soft limit is raised as far as the hard one
allows, and a limit too low for the cap is reported (server.ensure_descriptors)."""

from __future__ import annotations

import logging
import resource
from collections.abc import Iterator

import pytest

from llamaswap import server


class Limits:
    def __init__(self, soft: int, hard: int, settable: bool = True) -> None:
        self.soft, self.hard, self.settable = soft, hard, settable

    def get(self, which: int) -> tuple[int, int]:
        assert which == resource.RLIMIT_NOFILE
        return self.soft, self.hard

    def set(self, which: int, limits: tuple[int, int]) -> None:
        assert which == resource.RLIMIT_NOFILE
        if not self.settable:
            raise ValueError("not allowed")
        self.soft, self.hard = limits


class Messages(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    """What llamaswap.server logs (its parent may not propagate after a configure())."""
    logger = logging.getLogger("llamaswap.server")
    messages = Messages()
    logger.addHandler(messages)
    try:
        yield messages.lines
    finally:
        logger.removeHandler(messages)


def use(monkeypatch: pytest.MonkeyPatch, limits: Limits) -> None:
    monkeypatch.setattr(server.resource, "getrlimit", limits.get)
    monkeypatch.setattr(server.resource, "setrlimit", limits.set)


def test_the_soft_limit_is_raised_to_what_the_cap_needs(
    monkeypatch: pytest.MonkeyPatch, warnings: list[str]
) -> None:
    limits = Limits(1024, 524288)
    use(monkeypatch, limits)
    server.ensure_descriptors(1000)
    assert (limits.soft, limits.hard) == (1000 + server.FD_RESERVE, 524288)
    assert not [w for w in warnings if "maxConnections" in w]


def test_a_hard_limit_too_low_for_the_cap_is_reported(
    monkeypatch: pytest.MonkeyPatch, warnings: list[str]
) -> None:
    limits = Limits(256, 1024)
    use(monkeypatch, limits)
    server.ensure_descriptors(1000)
    assert limits.soft == 1024
    assert any("maxConnections is 1000 but the open-file limit is 1024" in w for w in warnings)


def test_nothing_changes_when_there_is_room_or_no_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    limits = Limits(65536, 65536, settable=False)
    use(monkeypatch, limits)
    server.ensure_descriptors(1000)
    server.ensure_descriptors(0)
    assert limits.soft == 65536
