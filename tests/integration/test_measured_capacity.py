"""Measured capacity through a live server: a command probe says what is free (a script
that answers from a list the test writes, one answer per probe, the last one forever),
and llamaswap evicts, learns and falls back as it says."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from .http_helpers import watching
from .server import config_yaml, fake_model, running_server

pytestmark = pytest.mark.anyio

ANSWERS = """\
import pathlib, sys
queue = pathlib.Path(sys.argv[1])
answers = queue.read_text().split()
print(answers[0], "MiB free")
if len(answers) > 1:
    queue.write_text(" ".join(answers[1:]))
"""
CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def probed_config(probe: str) -> str:
    top = (
        "resources:\n"
        f"  vram: {{capacity: 24, probe: {probe!r}, recoveryTimeout: 2}}\n"
        "routing:\n  router:\n    use: fit\n"
    )
    models = [fake_model(m, extra="resources: {vram: 8}") for m in ("a", "b")]
    return config_yaml(*models, top=top)


def answering(tmp_path: Path, *answers: float) -> str:
    script, queue = tmp_path / "probe.py", tmp_path / "answers"
    script.write_text(ANSWERS)
    queue.write_text(" ".join(f"{a:g}" for a in answers))
    return f"{sys.executable} {script} {queue}"


class Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def test_the_probe_decides_what_else_must_go_and_learns_real_use(tmp_path: Path) -> None:
    # a: before 24, ready 12 (it uses 12, not 8); b: 5 (another program took memory),
    # then, once a has stopped, 17 (enough for b's 8), then 9
    probe = answering(tmp_path, 24, 12, 5, 17, 9)
    async with (
        running_server(probed_config(probe)) as server,
        server.client() as http,
        watching(server) as watch,
    ):
        url = server.url + "/v1/chat/completions"
        router = server.service.router
        async with http.post(url, json={**CHAT, "model": "a"}) as response:
            assert response.status == 200
        await watch.until(lambda: "a" in router.measured)  # one probe at a time
        assert router.measured == {"a": {"vram": 12.0}}
        async with http.post(url, json={**CHAT, "model": "b"}) as response:
            assert response.status == 200
        assert router.model_state("a") == "stopped", "a had to go although 12 + 8 <= 24"
        await watch.until(lambda: "b" in router.measured)
        assert router.measured["b"] == {"vram": 8.0}
        assert router.free["vram"] == 9.0
        # shown to operators: /api/hardware (ours: resources) and /metrics
        async with http.get(server.url + "/api/hardware") as response:
            resources = (await response.json())["resources"]
        assert resources["vram"]["capacity"] == 24 and resources["vram"]["free"] == 9
        assert resources["vram"]["models"]["a"] == {"declared": 8, "learned": 12, "need": 12}
        async with http.get(server.url + "/metrics") as response:
            text = await response.text()
        for line in (
            'llamaswap_resource_capacity{resource="vram"} 24.0',
            'llamaswap_resource_free{resource="vram"} 9.0',
            'llamaswap_model_resource_need{model="a",resource="vram",source="declared"} 8.0',
            'llamaswap_model_resource_need{model="a",resource="vram",source="learned"} 12.0',
        ):
            assert line in text, line


async def test_a_probe_that_fails_falls_back_to_the_declared_figures(tmp_path: Path) -> None:
    warnings = Warnings()
    logging.getLogger("llamaswap.router").addHandler(warnings)
    try:
        probe = f"cat {tmp_path / 'no-such-file'}"
        async with running_server(probed_config(probe)) as server, server.client() as http:
            url = server.url + "/v1/chat/completions"
            for model in ("a", "b"):
                async with http.post(url, json={**CHAT, "model": model}) as response:
                    assert response.status == 200
            router = server.service.router
            assert router.model_state("a") == "ready" and router.model_state("b") == "ready"
    finally:
        logging.getLogger("llamaswap.router").removeHandler(warnings)
    failures = [line for line in warnings.lines if "probe of vram failed" in line]
    assert len(failures) == 1, "logged once, not at every start"


async def test_a_measured_need_is_kept_in_the_store_for_the_next_run(tmp_path: Path) -> None:
    store = f"store:\n  path: {tmp_path / 'activity.db'}\n"
    # first run: a is measured using 12 (24 free before, 12 once ready)
    first = probed_config(answering(tmp_path, 24, 12)).replace("routing:", store + "routing:")
    async with (
        running_server(first) as server,
        server.client() as http,
        watching(server) as watch,
    ):
        async with http.post(
            server.url + "/v1/chat/completions", json={**CHAT, "model": "a"}
        ) as response:
            assert response.status == 200
        await watch.until(lambda: "a" in server.service.router.measured)
    # next run, another port block: a is known to need 12 before it starts again, so
    # 10 free is not enough (8 declared would fit)
    again = probed_config(answering(tmp_path, 10)).replace("routing:", store + "routing:")
    async with running_server(again) as server, server.client() as http:
        router = server.service.router
        await router.unload([])  # a round trip through the router's inbox: recalled by now
        assert router.measured == {"a": {"vram": 12.0}}
        async with http.post(
            server.url + "/v1/chat/completions", json={**CHAT, "model": "a"}
        ) as response:
            assert response.status >= 500
            assert (
                "it needs vram 12 (as measured), the probe finds 10 free" in await response.text()
            )
    # a changed command is another need: its old figure is not recalled
    changed = again.replace("--model a", "--model a --respond other", 1)
    async with running_server(changed) as server, server.client() as http:
        await server.service.router.unload([])
        assert server.service.router.measured == {}
        async with http.post(
            server.url + "/v1/chat/completions", json={**CHAT, "model": "a"}
        ) as response:
            assert response.status == 200
