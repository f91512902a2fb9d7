"""The web UI in a real browser: load a model, chat with streaming, unload it, read its log.

Debian's chromium, headless, driven by Playwright's sync API; the server runs with fake
upstreams in its own thread. Every wait is Playwright's auto-waiting `expect`, never a
sleep. The static-file checks at the end need no browser.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from playwright.sync_api import ConsoleMessage, Locator, Page, Request, expect

from ..integration.server import RunningServer, config_yaml, fake_model
from .conftest import serve_in_thread

ANSWER = "tick."  # the cmd line is split by a shell: no spaces
CHUNKS = 4


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    chatty = fake_model("a", "--respond", ANSWER, "--chunks", str(CHUNKS), "--chunk-gap", "0.25")
    slow = fake_model(
        "b", "--respond", "from-b", "--startup-delay", "1", extra="sendLoadingState: true"
    )
    with serve_in_thread(config_yaml(chatty, slow)) as running:
        yield running


@dataclass
class PageWatch:
    """What a page did that it should not: console errors, page errors, outside requests."""

    origin: str
    problems: list[str] = field(default_factory=list)

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.problems.append(f"console: {message.text}")

    def page_error(self, error: Exception) -> None:
        self.problems.append(f"page error: {error}")

    def request(self, request: Request) -> None:
        if not request.url.startswith((self.origin + "/", "data:")):
            self.problems.append(f"request outside the server: {request.url}")


def watch(page: Page, origin: str) -> PageWatch:
    watcher = PageWatch(origin)
    page.on("console", watcher.console)
    page.on("pageerror", watcher.page_error)
    page.on("request", watcher.request)
    return watcher


def model_row(page: Page, model: str) -> Locator:
    return page.locator(f'[data-testid="model-row"][data-model="{model}"]')


def record_text_changes(page: Page) -> None:
    """Keep every value the chat transcript's text takes, to prove the answer streamed."""
    page.evaluate(
        """() => {
            window.__chatTexts = [];
            const transcript = document.querySelector('[data-testid="chat-output"]');
            new MutationObserver(() => {
                const answers = transcript.querySelectorAll('[data-testid="chat-assistant"]');
                const last = answers[answers.length - 1];
                if (last) window.__chatTexts.push(last.textContent.trim());
            }).observe(transcript, {childList: true, subtree: true, characterData: true});
        }"""
    )


def test_load_chat_unload_and_logs(
    server: RunningServer, new_page: Page, tmp_path_factory: pytest.TempPathFactory
) -> None:
    page = new_page
    watcher = watch(page, server.url)
    page.goto(server.url + "/ui")
    expect(page.get_by_test_id("connection")).to_have_text("connected")
    expect(page.get_by_test_id("router-state")).to_have_text("accepting")
    row = model_row(page, "a")
    state = row.get_by_test_id("model-state")
    expect(state).to_have_text("stopped")
    expect(model_row(page, "b").get_by_test_id("model-state")).to_have_text("stopped")

    # load from the UI and watch the state turn ready, live
    row.get_by_test_id("load").click()
    expect(state).to_have_text("ready")
    expect(row.get_by_test_id("unload")).to_be_enabled()
    expect(page.get_by_test_id("swap")).to_contain_text("a ready after")

    # chat in the playground: the answer arrives in pieces
    page.get_by_test_id("chat-model").select_option("a")
    page.get_by_test_id("chat-input").fill("hello")
    record_text_changes(page)
    page.get_by_test_id("chat-send").click()
    expect(page.get_by_test_id("chat-user")).to_have_text("hello")
    answer = page.get_by_test_id("chat-assistant").last
    expect(answer).to_have_text(ANSWER * CHUNKS)
    expect(page.locator(".message.assistant[data-done=true]")).to_have_count(1)
    texts: list[str] = page.evaluate("window.__chatTexts")
    partial = {text for text in texts if text and text != ANSWER * CHUNKS}
    assert partial, f"the answer did not stream: {texts}"
    assert all((ANSWER * CHUNKS).startswith(text) for text in partial)

    # the request shows up in recent activity, with its speed from the usage data
    activity = page.get_by_test_id("activity-row").first
    expect(activity).to_have_attribute("data-model", "a")
    expect(activity).to_have_attribute("data-status", "200")
    expect(activity).to_contain_text("/v1/chat/completions")
    expect(activity.get_by_test_id("activity-speed")).to_have_text(re.compile(r"^[\d,]+\.\d$"))
    expect(activity.get_by_test_id("activity-output")).to_have_text(re.compile(r"^[1-9][\d,]*$"))
    page.screenshot(path=str(tmp_path_factory.getbasetemp() / "ui-after-chat.png"), full_page=True)

    # unload it and watch it stop
    row.get_by_test_id("unload").click()
    expect(state).to_have_text("stopped")
    expect(row.get_by_test_id("load")).to_be_enabled()

    # its log: the upstream's own output, streamed from /logs/stream/a
    row.get_by_test_id("logs").click()
    expect(page.get_by_test_id("log-source")).to_have_value("a")
    expect(page.get_by_test_id("log-output")).to_contain_text("fake upstream: model=a")
    page.screenshot(path=str(tmp_path_factory.getbasetemp() / "ui-logs.png"), full_page=True)
    assert watcher.problems == []


def test_chat_shows_loading_progress_dimmed(server: RunningServer, new_page: Page) -> None:
    """A chat to a stopped model with sendLoadingState: the progress shows as reasoning."""
    page = new_page
    page.goto(server.url + "/ui")
    expect(model_row(page, "b").get_by_test_id("model-state")).to_have_text("stopped")
    page.get_by_test_id("chat-model").select_option("b")
    page.get_by_test_id("chat-input").fill("wake up")
    page.get_by_test_id("chat-input").press("Control+Enter")
    reply = page.locator(".message.assistant").last
    expect(reply.get_by_test_id("chat-assistant")).to_have_text("from-b" * 10)
    reasoning = reply.get_by_test_id("chat-reasoning")
    expect(reasoning).to_contain_text("llamaswap loading model: b")
    expect(reasoning).to_contain_text("Done!")
    expect(reasoning).to_have_css("font-style", "italic")
    expect(model_row(page, "b").get_by_test_id("model-state")).to_have_text("ready")


API_KEY = "sekrit-key"


def test_api_key_reads_events_with_fetch(new_page: Page) -> None:
    """With apiKeys set the page sends the stored key; /api/events is read with fetch."""
    yaml = config_yaml(fake_model("k"), top=f"apiKeys: [{API_KEY}]")
    with serve_in_thread(yaml) as server:
        page = new_page
        page.context.set_extra_http_headers({"Authorization": f"Bearer {API_KEY}"})
        page.goto(server.url + "/ui")  # the page itself needs the key too
        # The page's own requests carry that header until the key is stored: without
        # it they would be 401s with a Basic-auth challenge, whose prompt blocks input.
        page.get_by_test_id("api-key").fill(API_KEY)
        page.get_by_test_id("api-key-form").get_by_role("button", name="Save").click()
        expect(page.get_by_test_id("notice")).to_have_text("API key saved in this browser")
        page.context.set_extra_http_headers({})
        # saved again without the header: the event stream reconnects with the stored key
        page.get_by_test_id("api-key").press("Enter")
        expect(page.get_by_test_id("connection")).to_have_text("connected")
        row = model_row(page, "k")
        expect(row.get_by_test_id("model-state")).to_have_text("stopped")
        row.get_by_test_id("load").click()
        expect(row.get_by_test_id("model-state")).to_have_text("ready")  # over that stream
        stored = page.evaluate("localStorage.getItem('llamaswap.apiKey')")
        assert stored == API_KEY


def fetch(url: str) -> tuple[int, dict[str, str], str]:
    """A plain GET that ignores proxy settings: (status, headers, text)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def test_static_files_and_spa_fallback() -> None:
    """No browser here (and no event loop in this thread: Playwright's may be running)."""
    with serve_in_thread(config_yaml(fake_model("a"))) as server:
        for path in ("/ui", "/ui/", "/ui/models", "/ui/models/a"):
            status, headers, text = fetch(server.url + path)
            assert status == 200, path
            assert headers["Content-Type"].startswith("text/html")
            assert "default-src 'self'" in headers["Content-Security-Policy"]
            assert '<script type="module" src="/ui/app.js">' in text
        expected = {
            "/ui/app.js": "text/javascript",
            "/ui/style.css": "text/css",
            "/ui/favicon.svg": "image/svg+xml",
            "/favicon.ico": "image/svg+xml",
        }
        for path, content_type in expected.items():
            status, headers, text = fetch(server.url + path)
            assert status == 200, path
            assert headers["Content-Type"].split(";")[0] == content_type
            assert headers["X-Content-Type-Options"] == "nosniff"
            if path.endswith(".js"):
                assert "http://" not in text and "https://" not in text
        for path in ("/ui/missing.js", "/ui/%2e%2e/http/app.py", "/ui/.hidden"):
            status, _, _ = fetch(server.url + path)
            assert status == 404, path
