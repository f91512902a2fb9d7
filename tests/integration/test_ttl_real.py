"""ttl with real upstream processes: a slow request is never cut; idleness unloads."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from llamaswap.runtime.events import ProcessStateChanged

from .server import config_yaml, fake_model, running_server

pytestmark = pytest.mark.anyio


async def test_a_request_longer_than_the_ttl_is_not_cut_and_the_idle_model_unloads() -> None:
    yaml = config_yaml(fake_model("m", extra="ttl: 1"))
    states: list[ProcessStateChanged] = []
    stopped = anyio.Event()

    def on_event(event: Any) -> None:
        if isinstance(event, ProcessStateChanged) and event.model == "m":
            states.append(event)
            if event.new == "stopped":
                stopped.set()

    async with running_server(yaml) as server, server.client() as http:
        server.service.bus.add_listener(on_event)
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "wait": 2.0}
        started = time.monotonic()
        async with http.post(server.url + "/v1/chat/completions", json=body) as response:
            assert response.status == 200
            await response.json()
        finished = time.monotonic()
        assert finished - started >= 2.0
        assert not stopped.is_set(), "the ttl must not cut a request in flight"
        with anyio.fail_after(5):
            await stopped.wait()
        idle_for = time.monotonic() - finished
        assert 0.9 <= idle_for < 4, f"unloaded {idle_for:.2f}s after the request ended"
    assert [(e.old, e.new) for e in states] == [
        ("stopped", "launching"),
        ("launching", "starting"),
        ("starting", "ready"),
        ("ready", "stopping"),
        ("stopping", "stopped"),
        ("stopped", "shutdown"),  # the server shutting down at the end of the test
    ]
