"""Shared test configuration: anyio tests run on asyncio (python-statemachine needs it)."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
