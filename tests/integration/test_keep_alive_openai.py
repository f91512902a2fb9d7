"""LM Studio's per-request `ttl` on the OpenAI routes: it sets the model's idle time
from the end of the request (0: unload once idle) and never reaches the upstream."""

from __future__ import annotations

import json

import pytest

from .http_helpers import recorded_model, recording_upstream, watching
from .server import config_yaml, fake_model, running_server

pytestmark = pytest.mark.anyio

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


async def test_ttl_zero_unloads_the_model_once_the_request_is_done() -> None:
    async with (
        running_server(config_yaml(fake_model("a"))) as server,
        server.client() as http,
        watching(server) as watch,
    ):
        url = server.url + "/v1/chat/completions"
        async with http.post(url, json={**CHAT, "model": "a", "ttl": 0}) as response:
            assert response.status == 200
        await watch.until(lambda: watch.state("a") == "stopped")
        assert watch.states("a")[-2:] == ["stopping", "stopped"]


async def test_ttl_is_taken_out_of_the_body() -> None:
    async with recording_upstream() as recorder:
        yaml = config_yaml(recorded_model("r", recorder.url))
        async with running_server(yaml) as server, server.client() as http:
            url = server.url + "/v1/chat/completions"
            async with http.post(url, json={**CHAT, "model": "r", "ttl": 600}) as response:
                assert response.status == 200
        body = json.loads(recorder.requests()[-1].body)
        assert "ttl" not in body and body["model"] == "r"
