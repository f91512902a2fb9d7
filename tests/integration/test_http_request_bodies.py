"""Request bodies as clients send them: a Content-Encoding is passed through, never
inflated by llamaswap, so the upstream gets the bytes the header describes and a gzip
bomb costs nothing."""

from __future__ import annotations

import gzip
import json

import pytest

from .http_helpers import CHAT, chat, recorded_model, recording_upstream
from .server import config_yaml, fake_model, running_server

pytestmark = pytest.mark.anyio


async def test_an_encoded_body_reaches_the_upstream_as_sent() -> None:
    """proxy.py forwards Content-Encoding; the body must be the bytes it describes
    (aiohttp's server used to inflate it and forward gzip-labelled plain text)."""
    async with recording_upstream() as recorder:
        yaml = config_yaml(recorded_model("r", recorder.url))
        async with running_server(yaml) as server, server.client() as http:
            packed = gzip.compress(json.dumps(chat("r")).encode())
            headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
            url = server.url + "/upstream/r/v1/chat/completions"
            async with http.post(url, data=packed, headers=headers) as response:
                assert response.status == 200, await response.text()
            seen = recorder.requests()[-1]
            # the recorder (an aiohttp server) inflated what it got: it was gzip indeed
            assert seen.headers["Content-Encoding"] == "gzip"
            assert json.loads(seen.body) == chat("r")


async def test_a_gzip_bomb_is_not_inflated() -> None:
    """200 MB of JSON in 200 KB: llama-swap reads the bytes as they are (no model found
    in them); inflating it here would cost CPU on the event loop and then a 413."""
    bomb = gzip.compress(b'{"model": "a", "x": "' + b"a" * (200 * 1024 * 1024) + b'"}')
    async with running_server(config_yaml(fake_model("a"))) as server, server.client() as http:
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        async with http.post(server.url + CHAT, data=bomb, headers=headers) as response:
            assert response.status == 400
            assert "not valid JSON" in (await response.json())["error"]["message"]
        assert server.service.router.model_state("a") == "stopped"
