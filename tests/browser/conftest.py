"""Browser fixtures: a real llamaswap in its own event loop, and Debian's chromium, headless.

Playwright's sync API runs its own event loop in the test thread, so the server cannot
share it: a blocking portal runs `running_server` in a second thread with its own loop.
The browser is Debian's chromium (no browser download; `playwright install` is never
needed), started with the flags that keep it off the network: this machine's network is
closed, and chromium's background services would otherwise try to reach Google.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import anyio.from_thread
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from ..integration.server import RunningServer, running_server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
EXPECT_TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is not installed")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def serve_in_thread(yaml_text: str) -> Iterator[RunningServer]:
    """Run `running_server(yaml_text)` in a portal thread for as long as the caller holds it."""
    with (
        anyio.from_thread.start_blocking_portal(backend="asyncio") as portal,
        portal.wrap_async_context_manager(running_server(yaml_text)) as server,
    ):
        yield server


@pytest.fixture
def new_page(browser: Browser) -> Iterator[Page]:
    """A page in a fresh context (its own localStorage), with the expect timeout set."""
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(EXPECT_TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()
