"""`clientWriteTimeout` (ours): seconds a client may accept no byte of an answer before
the stream is cut and the model's lease released. Default 60; 0 disables; < 0 is an error."""

from __future__ import annotations

import pytest

from tests.unit.config.helpers import assert_problem, load


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [("", 60.0), ("clientWriteTimeout: 0", 0.0), ("clientWriteTimeout: 2.5", 2.5)],
)
def test_values(yaml_text: str, expected: float) -> None:
    assert load(yaml_text).client_write_timeout == expected


@pytest.mark.parametrize(
    ("yaml_text", "fragment"),
    [
        ("clientWriteTimeout: -1", "clientWriteTimeout must be >= 0"),
        ("clientWriteTimeout: soon", "must be a number"),
    ],
)
def test_errors(yaml_text: str, fragment: str) -> None:
    assert_problem(yaml_text, "clientWriteTimeout", fragment)
