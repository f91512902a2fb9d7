"""`/logs` and `/logs/stream`: history, live lines, logger names, and ending at shutdown."""

from __future__ import annotations

import aiohttp
import anyio
import pytest

from llamaswap.testing import upstream_command

from .server import config_yaml, fake_model, running_server

pytestmark = pytest.mark.anyio

CHAT = "/v1/chat/completions"
STARTUP_A = "llamaswap fake upstream: model=a "
STARTUP_B = "llamaswap fake upstream: model=b "


def chat(model: str) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


def loud_model(name: str) -> str:
    """A fake upstream that logs one `<METHOD> <path> <status>` line per request."""
    cmd = " ".join(upstream_command("${PORT}", "--model", name))
    return f"  {name}:\n    cmd: {cmd}\n    proxy: http://127.0.0.1:${{PORT}}"


async def read_until(response: aiohttp.ClientResponse, needle: str, seconds: float = 20) -> str:
    """The streamed text up to and including the chunk that contains `needle`."""
    seen = ""
    with anyio.fail_after(seconds):
        while needle not in seen:
            chunk = await response.content.readany()
            assert chunk, f"the stream ended before {needle!r} arrived; got {seen!r}"
            seen += chunk.decode()
    return seen


async def test_history_is_the_combined_log_and_a_browser_goes_to_the_ui() -> None:
    async with running_server(config_yaml(fake_model("a"))) as server, server.client() as http:
        async with http.post(server.url + CHAT, json=chat("a")) as response:
            assert response.status == 200
        async with http.get(server.url + "/logs") as response:
            assert response.status == 200
            assert response.content_type == "text/plain"
            text = await response.text()
        assert STARTUP_A in text  # an upstream line
        assert "swap to a" in text  # one of llamaswap's own lines
        headers = {"Accept": "text/html,application/xhtml+xml"}
        async with http.get(server.url + "/logs", headers=headers, allow_redirects=False) as resp:
            assert resp.status == 302
            assert resp.headers["Location"] == "/ui/"


async def test_stream_sends_history_then_live_lines() -> None:
    yaml = config_yaml(loud_model("a"))
    async with running_server(yaml) as server, server.client() as http:
        async with http.post(server.url + CHAT, json=chat("a")) as response:
            assert response.status == 200
        async with http.get(server.url + "/logs/stream/a") as stream:
            assert stream.status == 200
            assert stream.headers["Content-Type"].startswith("text/plain")
            assert stream.headers["X-Content-Type-Options"] == "nosniff"
            assert stream.headers["X-Accel-Buffering"] == "no"
            assert stream.headers["Transfer-Encoding"] == "chunked"
            await read_until(stream, STARTUP_A)
            assert "POST /v1/completions" not in server.service.upstream_log.history()
            completion = {"model": "a", "prompt": "hi"}
            async with http.post(server.url + "/v1/completions", json=completion) as response:
                assert response.status == 200
            await read_until(stream, "POST /v1/completions 200")


async def test_no_history_sends_only_new_lines() -> None:
    async with running_server(config_yaml(fake_model("a"))) as server, server.client() as http:
        async with http.post(server.url + CHAT, json=chat("a")) as response:
            assert response.status == 200
        ring = server.service.model_log("a")
        assert ring is not None
        (first_start,) = [line for line in ring.lines() if STARTUP_A in line]
        async with http.get(server.url + "/logs/stream/a?no-history") as stream:
            assert stream.status == 200
            async with http.post(server.url + "/api/models/unload/a") as response:
                assert response.status == 200
            async with http.post(server.url + CHAT, json=chat("a")) as response:
                assert response.status == 200  # a second start: a new start-up line
            text = await read_until(stream, STARTUP_A)
        assert first_start not in text


async def test_combined_stream_follows_proxy_and_upstream_logs() -> None:
    yaml = config_yaml(fake_model("a"), fake_model("b"))
    async with running_server(yaml) as server, server.client() as http:
        async with http.get(server.url + "/logs/stream?no-history") as stream:
            assert stream.status == 200
            async with http.post(server.url + CHAT, json=chat("b")) as response:
                assert response.status == 200
            text = await read_until(stream, STARTUP_B)
        assert "swap to b" in text  # proxy
        assert STARTUP_B in text  # upstream


async def test_proxy_and_upstream_loggers_and_aliases() -> None:
    yaml = config_yaml(fake_model("a", extra="aliases: [alpha]"))
    async with running_server(yaml) as server, server.client() as http:
        async with http.post(server.url + CHAT, json=chat("a")) as response:
            assert response.status == 200
        async with http.get(server.url + "/logs/stream/alpha") as stream:
            assert stream.status == 200
            await read_until(stream, STARTUP_A)
        async with http.get(server.url + "/logs/stream/upstream") as stream:
            assert stream.status == 200
            await read_until(stream, STARTUP_A)
        async with http.get(server.url + "/logs/stream/proxy") as stream:
            assert stream.status == 200
            text = await read_until(stream, "swap to a")
        assert STARTUP_A not in text


@pytest.mark.parametrize("logger", ["nope", "a/b", "proxy2"])
async def test_unknown_logger_is_a_400(logger: str) -> None:
    async with running_server(config_yaml(fake_model("a"))) as server, server.client() as http:
        async with http.get(f"{server.url}/logs/stream/{logger}") as response:
            assert response.status == 400
            body = await response.json()
        message = body["error"]["message"]
        assert message == "invalid logger. Use 'proxy', 'upstream' or a model's ID"


async def test_streams_end_when_the_server_shuts_down() -> None:
    async with aiohttp.ClientSession(trust_env=False) as http:
        with anyio.fail_after(20):  # aiohttp alone would wait 60 s for the open stream
            async with running_server(config_yaml(fake_model("a"))) as server:
                async with http.post(server.url + CHAT, json=chat("a")) as response:
                    assert response.status == 200
                stream = await http.get(server.url + "/logs/stream")
                await read_until(stream, "\n")  # the history has arrived: it is streaming
        with anyio.fail_after(10):
            rest = await stream.content.read()  # returns at the end of the chunked body
        assert stream.content.at_eof()
        assert isinstance(rest, bytes)
        stream.release()
