"""The operator's view in a real browser (issue 17): the activity history from the store
(survives a reload, token columns, model filter, paging, captures), requests in flight
with Cancel, the hardware panel, the playground's default model, markdown rendered
safely, Stop shown as stopped, and the log filter."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from ..integration.server import RunningServer, config_yaml, fake_model
from .conftest import serve_in_thread
from .test_ui import model_row, watch

MARKDOWN = "**bold**<img/src=x/onerror=alert(1)>"


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    models = (
        fake_model("aa-embed"),  # first in the list, but not a chat model
        fake_model("chat", "--respond", MARKDOWN, "--chunks", "2"),
        fake_model("slow", "--respond", "tock.", "--chunks", "400", "--chunk-gap", "0.05"),
    )
    with serve_in_thread(config_yaml(*models, top="captureBuffer: 2")) as running:
        yield running


def chat_request(page: Page, server: RunningServer, model: str, text: str) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    response = page.request.post(server.url + "/v1/chat/completions", data=body)
    assert response.status == 200


def test_playground_picks_a_chat_model_and_renders_markdown_safely(
    server: RunningServer, new_page: Page
) -> None:
    page = new_page
    watcher = watch(page, server.url)
    page.goto(server.url + "/ui")
    expect(page.get_by_test_id("chat-model")).to_have_value("chat")
    page.get_by_test_id("chat-settings").locator("summary").click()
    page.get_by_test_id("chat-system").fill("Answer in markdown.")
    page.get_by_test_id("chat-temperature").fill("0.2")
    page.get_by_test_id("chat-max-tokens").fill("64")
    with page.expect_request("**/v1/chat/completions") as sent:
        page.get_by_test_id("chat-input").fill("hello")
        page.get_by_test_id("chat-send").click()
    body = sent.value.post_data_json
    assert body["messages"][0] == {"role": "system", "content": "Answer in markdown."}
    assert (body["temperature"], body["max_tokens"]) == (0.2, 64) and "top_p" not in body
    answer = page.get_by_test_id("chat-assistant").last
    expect(answer.locator("strong").first).to_have_text("bold")
    expect(page.locator(".message.assistant[data-done=true]")).to_have_count(1)
    expect(answer.locator("img")).to_have_count(0)  # sanitised: no image, no handler
    assert page.evaluate("document.querySelectorAll('[onerror]').length") == 0
    assert watcher.problems == []


def test_stop_is_shown_as_stopped_not_as_an_error(server: RunningServer, new_page: Page) -> None:
    page = new_page
    page.goto(server.url + "/ui")
    page.get_by_test_id("chat-model").select_option("slow")
    page.get_by_test_id("chat-input").fill("count")
    page.get_by_test_id("chat-send").click()
    expect(page.get_by_test_id("chat-assistant").last).to_contain_text("tock.")
    page.get_by_test_id("chat-stop").click()
    reply = page.locator(".message.assistant").last
    expect(reply).to_have_attribute("data-stopped", "true")
    expect(reply.get_by_test_id("chat-note")).to_have_text("stopped")
    expect(reply).not_to_have_class(re.compile(r"\berror\b"))
    row = page.locator('[data-testid="activity-row"][data-model="slow"]').first
    expect(row).to_have_attribute("data-status", "499")
    expect(row.locator(".status-stopped")).to_have_text("stopped")


def test_cancel_a_request_in_flight(server: RunningServer, new_page: Page) -> None:
    page = new_page
    page.goto(server.url + "/ui")
    page.get_by_test_id("chat-model").select_option("slow")
    page.get_by_test_id("chat-input").fill("count again")
    page.get_by_test_id("chat-send").click()
    expect(page.get_by_test_id("chat-assistant").last).to_contain_text("tock.")
    row = page.locator('[data-testid="inflight-row"][data-model="slow"]')
    expect(row).to_have_count(1)
    row.get_by_test_id("cancel-inflight").click()
    expect(row).to_have_count(0)
    reply = page.locator(".message.assistant").last
    expect(reply).to_have_attribute("data-done", "true")
    expect(reply.get_by_test_id("chat-note")).to_contain_text("cancelled by an operator")
    expect(page.get_by_test_id("chat-send")).to_be_enabled()


def test_activity_survives_reload_filters_pages_and_shows_captures(
    server: RunningServer, new_page: Page
) -> None:
    page = new_page
    page.goto(server.url + "/ui")
    for index in range(21):
        chat_request(page, server, "chat", f"question {index}")
    chat_request(page, server, "aa-embed", "the odd one")
    page.reload()  # the history comes from the store, not from this page's memory
    rows = page.get_by_test_id("activity-row")
    expect(rows).to_have_count(20)
    expect(rows.first).to_have_attribute("data-model", "aa-embed")
    expect(page.get_by_test_id("activity-page")).to_contain_text("page 1 of")
    expect(page.get_by_test_id("activity-stats")).to_contain_text("requests")
    first = rows.first
    expect(first.get_by_test_id("activity-input")).to_have_text(re.compile(r"^[1-9][\d,]*$"))

    page.get_by_test_id("activity-next").click()
    expect(page.get_by_test_id("activity-prev")).to_be_enabled()
    expect(page.get_by_test_id("activity-page")).to_contain_text("page 2 of")

    page.get_by_test_id("activity-model").select_option("aa-embed")
    expect(rows).to_have_count(1)
    expect(page.get_by_test_id("activity-page")).to_contain_text("page 1 of 1 (1 requests)")

    rows.first.get_by_test_id("view-capture").click()
    dialog = page.get_by_test_id("capture-dialog")
    expect(dialog).to_be_visible()
    expect(page.get_by_test_id("capture-req-body")).to_contain_text("the odd one")
    expect(page.get_by_test_id("capture-resp-body")).to_contain_text("choices")
    page.get_by_test_id("capture-close").click()
    expect(dialog).to_be_hidden()


def test_hardware_panel_and_log_filter(server: RunningServer, new_page: Page) -> None:
    page = new_page
    page.goto(server.url + "/ui")
    expect(page.get_by_test_id("hardware-summary")).to_contain_text("memory")
    expect(page.get_by_test_id("gauge-memory")).to_contain_text("of")
    expect(page.get_by_test_id("gauge-cpu")).to_contain_text("cores")

    model_row(page, "chat").get_by_test_id("load").click()
    expect(model_row(page, "chat").get_by_test_id("model-state")).to_have_text("ready")
    page.get_by_test_id("log-source").select_option("proxy")
    output = page.get_by_test_id("log-output")
    expect(output).to_contain_text("[chat] starting -> ready")
    page.get_by_test_id("log-filter").fill("starting -> ready")
    expect(output).to_contain_text("starting -> ready")
    expect(output).not_to_contain_text("stopped -> launching")
    page.get_by_test_id("log-filter").fill("")
    page.get_by_test_id("log-level").select_option("30")  # warnings and errors only
    expect(output).not_to_contain_text("starting -> ready")
