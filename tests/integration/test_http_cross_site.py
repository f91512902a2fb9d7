"""Cross-site requests and trusted proxies (issue 13, W5 and X-Forwarded-For).

A page on another origin must not make the box swap models: its form POST (a "simple"
request, no preflight) is refused with 403, and so is a cross-site `<img>` GET of
/upstream/<model>/. Requests without an Origin (curl, SDKs, Open WebUI's server) and
the built-in UI (same origin) work as before; `allowedOrigins` lets chosen pages in.
The access log names the client from X-Forwarded-For only when a trusted proxy sent it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import aiohttp
import pytest
from aiohttp import web

from llamaswap.config import parse_config
from llamaswap.server import apply_config

from .http_helpers import CHAT, assert_error, chat
from .server import RunningServer, config_yaml, fake_model, running_server

pytestmark = pytest.mark.anyio

EVIL = "http://evil.example"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def two_models(top: str = "") -> str:
    return config_yaml(fake_model("a"), fake_model("b"), top=top)


async def status_and_error(response: aiohttp.ClientResponse) -> tuple[int, str | None]:
    if response.content_type != "application/json" or response.status < 400:
        return response.status, None
    return response.status, assert_error(await response.json())


async def test_a_cross_site_form_post_cannot_swap_models() -> None:
    async with running_server(two_models()) as server, server.client() as http:
        router = server.service.router
        for origin in (EVIL, "null", "http://localhost:3000"):
            headers = {**FORM, "Origin": origin}
            async with http.post(server.url + CHAT, data="model=b", headers=headers) as response:
                status, message = await status_and_error(response)
            assert status == 403, (origin, status)
            assert message is not None and "cross-site request refused" in message
        for method, path in (
            ("POST", "/api/models/load/b"),
            ("POST", "/api/models/unload"),
            ("PUT", "/upstream/b/x"),
            ("PATCH", "/upstream/b/x"),
            ("DELETE", "/upstream/b/x"),
        ):
            async with http.request(
                method, server.url + path, headers={"Origin": EVIL}
            ) as response:
                assert response.status == 403, (method, path, await response.text())
        assert router.model_state("b") == "stopped"


async def test_a_cross_site_subresource_cannot_load_a_model() -> None:
    """`<img src="http://box:8080/upstream/b/">` on another site: no Origin header, but
    the browser says Sec-Fetch-Site: cross-site."""
    async with running_server(two_models()) as server, server.client() as http:
        image = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}
        async with http.get(server.url + "/upstream/b/health", headers=image) as response:
            assert response.status == 403
        assert server.service.router.model_state("b") == "stopped"


async def test_requests_without_origin_same_origin_and_localhost_work() -> None:
    async with running_server(two_models()) as server, server.client() as http:
        port = server.url.rsplit(":", 1)[1]
        for headers in (
            {},  # curl, SDKs, Open WebUI's server side
            {"Origin": server.url, "Sec-Fetch-Site": "same-origin"},  # the built-in UI
            {"Origin": f"http://localhost:{port}"},  # the UI opened as localhost
        ):
            async with http.post(server.url + CHAT, json=chat("a"), headers=headers) as response:
                assert response.status == 200, (headers, await response.text())
        ui = {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate"}
        async with http.get(server.url + "/ui/", headers=ui) as response:
            assert response.status == 200
        same = {"Origin": server.url, "Sec-Fetch-Site": "same-origin"}
        async with http.post(server.url + "/api/models/unload", headers=same) as response:
            assert response.status == 200


async def test_foreign_origins_get_no_cors_headers_and_no_preflight() -> None:
    """llama-swap echoes any Origin on /v1/models and allows every preflight."""
    async with running_server(two_models()) as server, server.client() as http:
        async with http.get(server.url + "/v1/models", headers={"Origin": EVIL}) as response:
            assert response.status == 200
            assert "Access-Control-Allow-Origin" not in response.headers
        preflight = {"Origin": EVIL, "Access-Control-Request-Method": "POST"}
        async with http.options(server.url + CHAT, headers=preflight) as response:
            assert response.status == 403
            assert "Access-Control-Allow-Origin" not in response.headers
        async with http.options(server.url + CHAT) as response:  # no Origin: no preflight
            assert response.status == 204
            assert "Access-Control-Allow-Origin" not in response.headers


async def test_allowed_origins_work_cross_site() -> None:
    chat_ui = "https://chat.example.com"
    top = f'allowedOrigins: ["{chat_ui}"]'
    async with running_server(two_models(top)) as server, server.client() as http:
        preflight = {
            "Origin": chat_ui,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, authorization",
        }
        async with http.options(server.url + CHAT, headers=preflight) as response:
            assert response.status == 204
            assert response.headers["Access-Control-Allow-Origin"] == chat_ui
            assert response.headers["Vary"] == "Origin"
            assert response.headers["Access-Control-Allow-Headers"] == "content-type, authorization"
        allowed = {"Origin": chat_ui, "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"}
        async with http.post(server.url + CHAT, json=chat("a"), headers=allowed) as response:
            assert response.status == 200
        async with http.get(server.url + "/v1/models", headers=allowed) as response:
            assert response.headers["Access-Control-Allow-Origin"] == chat_ui
        other = {"Origin": "https://other.example.com"}
        async with http.post(server.url + CHAT, json=chat("a"), headers=other) as response:
            assert response.status == 403


@asynccontextmanager
async def echoing_upstream() -> AsyncIterator[str]:
    """An upstream that, like llama-server, echoes any Origin in its CORS header."""

    async def handle(request: web.Request) -> web.Response:
        origin = request.headers.get("Origin", "*")
        return web.json_response({"ok": True}, headers={"Access-Control-Allow-Origin": origin})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_an_upstream_echo_of_a_foreign_origin_is_dropped() -> None:
    async with echoing_upstream() as upstream:
        model = f"  e:\n    cmd: sleep 600\n    proxy: {upstream}\n    checkEndpoint: none"
        async with running_server(config_yaml(model)) as server, server.client() as http:
            url = server.url + "/upstream/e/props"
            async with http.get(url, headers={"Origin": EVIL}) as response:
                assert response.status == 200
                assert "Access-Control-Allow-Origin" not in response.headers
            async with http.get(url, headers={"Origin": server.url}) as response:
                assert response.headers["Access-Control-Allow-Origin"] == server.url


class AccessLines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextmanager
def access_lines() -> Iterator[AccessLines]:
    collect = AccessLines()
    logger = logging.getLogger("llamaswap.access")
    logger.addHandler(collect)
    try:
        yield collect
    finally:
        logger.removeHandler(collect)


async def logged_client(server: RunningServer, headers: dict[str, str]) -> str:
    with access_lines() as seen:
        async with server.client() as http, http.get(server.url + "/running", headers=headers):
            pass
    [line] = [line for line in seen.lines if "/running" in line]
    return line.split()[1]


async def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    spoofed = {"X-Forwarded-For": "6.6.6.6", "X-Real-IP": "7.7.7.7"}
    async with running_server(two_models()) as server:
        assert await logged_client(server, spoofed) == "127.0.0.1"
    async with running_server(two_models("trustedProxies: [127.0.0.1]")) as server:
        assert await logged_client(server, spoofed) == "6.6.6.6"
        assert await logged_client(server, {"X-Real-IP": "7.7.7.7"}) == "7.7.7.7"
        chain = {"X-Forwarded-For": "1.1.1.1, 2.2.2.2"}  # 1.1.1.1 was written by the client
        assert await logged_client(server, chain) == "2.2.2.2"


async def test_a_reload_applies_new_origins_and_proxies() -> None:
    async with running_server(two_models()) as server, server.client() as http:
        cross_site = {"Origin": EVIL}
        async with http.post(server.url + CHAT, json=chat("a"), headers=cross_site) as response:
            assert response.status == 403
        reloaded = parse_config(two_models('allowedOrigins: ["*"]\ntrustedProxies: [127.0.0.1]'))
        await apply_config(server.service, reloaded)
        async with http.post(server.url + CHAT, json=chat("a"), headers=cross_site) as response:
            assert response.status == 200
        assert await logged_client(server, {"X-Forwarded-For": "6.6.6.6"}) == "6.6.6.6"
