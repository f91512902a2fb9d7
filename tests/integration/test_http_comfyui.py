"""`/comfyui/...` and the `comfyui_auto` model, ported from llama-swap's
`internal/server/api_test.go` (TestServer_HandleComfyUI, _RequiresExactLocalModel,
_UsesAuthentication) and `internal/config/model_config_test.go` (ComfyUIOverrides):
redirects, only the root loads the model, escaped paths preserved, authentication, its
websocket never loads or holds it, and its concurrency limit is at least 50."""

from __future__ import annotations

import aiohttp
import anyio
import pytest
from aiohttp import WSMsgType
from yarl import URL

from .http_helpers import error_of, watching
from .server import config_yaml, running_server
from .ws_upstream import ws_upstream

pytestmark = pytest.mark.anyio

COMFY = "comfyui_auto"


async def get_path(http: aiohttp.ClientSession, url: str, method: str = "GET") -> str:
    """Request `url` (sent byte for byte); the path the upstream saw."""
    async with http.request(method, URL(url, encoded=True)) as response:
        assert response.status == 200, (url, response.status, await response.text())
        return str((await response.json())["path"])


async def test_redirects_to_the_root_keeping_the_query() -> None:
    async with ws_upstream() as upstream:
        yaml = config_yaml(upstream.model(COMFY))
        async with running_server(yaml) as server, server.client() as http:
            for method, status in (("GET", 301), ("HEAD", 301), ("POST", 308), ("PUT", 308)):
                url = server.url + "/comfyui?token=value"
                async with http.request(method, url, allow_redirects=False) as response:
                    assert response.status == status, method
                    assert response.headers["Location"] == "/comfyui/?token=value"
            assert server.service.router.model_state(COMFY) == "stopped"


async def test_only_the_root_loads_the_model_and_paths_keep_their_escapes() -> None:
    async with ws_upstream(healthy=False) as upstream:
        yaml = config_yaml(upstream.model(COMFY))
        async with (
            running_server(yaml) as server,
            server.client() as http,
            watching(server) as watch,
        ):
            # not loaded: any path but the root is a 409, and nothing starts
            async with http.get(server.url + "/comfyui/api/prompt") as response:
                message = await error_of(response, 409)
            assert message == f"model {COMFY} is not loaded; only /comfyui/ can start it"
            assert watch.states(COMFY) == []
            # starting: still a 409, no second start
            async with anyio.create_task_group() as tg:
                tg.start_soon(get_path, http, server.url + "/comfyui/?token=value")
                await watch.until(lambda: watch.state(COMFY) == "starting")
                async with http.post(server.url + "/comfyui/api/prompt") as response:
                    await error_of(response, 409)
                assert watch.swaps_to(COMFY) == 1
                upstream.healthy.set()
            assert upstream.requests[0] == f"/{COMFY}/?token=value"  # the root loaded it
            # ready: everything is forwarded, escapes as the client sent them
            for sent in (
                "/api/userdata/workflows%2Fexample.json?preview=1",
                "/api/userdata/workflows%252Fexample.json",
                "/api/%E2%9C%93%2Ffile.json",
                "/api/prompt",
            ):
                path = await get_path(http, server.url + "/comfyui" + sent, "POST")
                assert path == f"/{COMFY}{sent}"
            assert watch.swaps_to(COMFY) == 1
            # a climb out of the prefix is refused as on /upstream
            async with http.get(URL(server.url + "/comfyui/a/%2e%2e/x", encoded=True)) as r:
                await error_of(r, 400)


async def test_the_browsers_origin_matches_the_host_comfyui_sees() -> None:
    """llama-swap keeps the client's Host, and ComfyUI refuses a POST or a websocket
    whose Origin is not its Host: through llamaswap both come from the same page."""
    async with ws_upstream() as upstream:
        upstream.check_origin = True
        async with running_server(config_yaml(upstream.model(COMFY))) as server:
            async with server.client() as http:
                page = {"Origin": server.url}
                await get_path(http, server.url + "/comfyui/")
                async with http.post(server.url + "/comfyui/api/prompt", headers=page) as r:
                    assert r.status == 200, await r.text()
                async with http.ws_connect(server.url + "/comfyui/ws", headers=page) as ws:
                    await ws.send_str("queued")
                    assert (await ws.receive()).data == "queued"
                    await ws.close()
            handshake = upstream.handshakes[-1]
            assert handshake.headers["Host"] == server.url.removeprefix("http://")


async def test_the_model_must_be_local() -> None:
    async with ws_upstream() as upstream:
        # missing altogether, or only a peer's model of that name
        for top in ("", f"peers:\n  p:\n    proxy: {upstream.url}\n    models: [{COMFY}]"):
            yaml = config_yaml(upstream.model("other"), top=top)
            async with (
                running_server(yaml) as server,
                server.client() as http,
                http.get(server.url + "/comfyui/") as response,
            ):
                assert await error_of(response, 404) == f"local model {COMFY} not found"


async def test_comfyui_needs_the_api_key() -> None:
    async with ws_upstream() as upstream:
        yaml = config_yaml(upstream.model(COMFY), top="apiKeys: [secret]")
        async with running_server(yaml) as server, server.client() as http:
            for path in ("/comfyui", "/comfyui/"):
                async with http.get(server.url + path, allow_redirects=False) as response:
                    await error_of(response, 401)
            headers = {"Authorization": "Bearer secret"}
            async with http.get(server.url + "/comfyui/", headers=headers) as response:
                assert response.status == 200


async def test_its_websocket_never_loads_or_holds_the_model() -> None:
    async with ws_upstream() as upstream:
        yaml = config_yaml(upstream.model(COMFY), upstream.model("llm"))
        async with running_server(yaml) as server, server.client() as http:
            for path in ("/comfyui/ws", "/comfyui/"):  # not even the root may load it
                try:
                    async with http.ws_connect(server.url + path):
                        raise AssertionError("accepted")
                except aiohttp.WSServerHandshakeError as exc:
                    assert exc.status == 409
            assert server.service.router.model_state(COMFY) == "stopped"
            await get_path(http, server.url + "/comfyui/")
            async with http.ws_connect(server.url + "/comfyui/ws?clientId=1") as ws:
                await ws.send_str("progress?")
                assert (await ws.receive()).data == "progress?"
                assert server.service.router.snapshot.in_flight == {}
                # another model evicts comfyui_auto at once; the socket goes with it
                await get_path(http, server.url + "/upstream/llm/x")
                message = await ws.receive()
                assert message.type is WSMsgType.CLOSE and message.data == 1001
            assert upstream.handshakes[-1].raw_path == f"/{COMFY}/ws?clientId=1"


async def test_fifty_requests_at_once_despite_a_lower_limit() -> None:
    async with ws_upstream() as upstream:
        yaml = config_yaml(upstream.model(COMFY, "concurrencyLimit: 4"))
        async with running_server(yaml) as server:
            assert server.config.models[COMFY].concurrency_limit == 50
            connector = aiohttp.TCPConnector(limit=0)
            async with server.client(connector=connector) as http:
                await get_path(http, server.url + "/comfyui/")
                async with anyio.create_task_group() as tg:
                    for _ in range(50):
                        tg.start_soon(get_path, http, server.url + "/comfyui/api/hold")
                    await upstream.until(lambda: upstream.holding == 50)
                    async with http.get(server.url + "/comfyui/api/x") as response:
                        await error_of(response, 429)
                    upstream.release.set()
