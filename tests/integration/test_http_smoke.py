"""A first end-to-end check through real HTTP and a real fake upstream."""

from __future__ import annotations

import pytest

from .server import config_yaml, fake_model, running_server

pytestmark = pytest.mark.anyio


async def test_chat_round_trip_and_swap() -> None:
    yaml = config_yaml(
        fake_model("a", "--respond", "from-a"), fake_model("b", "--respond", "from-b")
    )
    async with running_server(yaml) as server, server.client() as http:
        for model in ("a", "b", "a"):
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
            async with http.post(server.url + "/v1/chat/completions", json=body) as response:
                assert response.status == 200
                answer = await response.json()
                assert answer["choices"][0]["message"]["content"] == f"from-{model}"
        async with http.get(server.url + "/running") as response:
            running = await response.json()
        assert [entry["model"] for entry in running["running"]] == ["a"]
