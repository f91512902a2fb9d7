"""Measured capacity in the hardware panel (issue 19): the resource's capacity, what its
probe last found free, and each model's need as declared and as measured."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from ..integration.server import RunningServer, config_yaml, fake_model
from ..integration.test_measured_capacity import ANSWERS
from .conftest import serve_in_thread
from .test_ui import model_row


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("probe")
    script, queue = folder / "probe.py", folder / "answers"
    script.write_text(ANSWERS)
    queue.write_text("24 12")  # 24 free before a starts, 12 once it is ready
    top = (
        "resources:\n"
        f"  vram: {{capacity: 24, probe: '{sys.executable} {script} {queue}'}}\n"
        "routing:\n  router:\n    use: fit\n"
    )
    yaml = config_yaml(fake_model("a", extra="resources: {vram: 8}"), top=top)
    with serve_in_thread(yaml) as running:
        yield running


def test_the_hardware_panel_shows_declared_measured_and_free(
    server: RunningServer, new_page: Page
) -> None:
    page = new_page
    page.goto(server.url + "/ui")
    table = page.get_by_test_id("resource-vram")
    expect(table.locator("caption")).to_contain_text("vram: capacity 24")
    expect(page.get_by_test_id("resource-vram-a")).to_contain_text("8")
    model_row(page, "a").get_by_test_id("load").click()
    expect(model_row(page, "a").get_by_test_id("model-state")).to_have_text("ready")
    row = page.get_by_test_id("resource-vram-a")  # refreshed with the gauges (5 s)
    expect(row.locator("td").nth(2)).to_have_text("12", timeout=15_000)
    expect(row.locator("td").nth(3)).to_have_text("12")
    expect(table.locator("caption")).to_contain_text("free 12 (probe:")
