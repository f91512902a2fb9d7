"""Websockets through llamaswap (llama-swap §4.6, `compat.ignoreWebsockets`), ported from
llama-swap's `internal/router/base_test.go` (IgnoreWebsocketsRejectsModelUnlessReady,
WebsocketStartsModelWhenCompatDisabled, IgnoreWebsocketsDoesNotBlockSwap),
`internal/process` (TTL_IgnoresWebsocket) and `internal/server/selector_test.go`
(IgnoredWebsocketDoesNotReserveSpillover): a 101 and frames relayed both ways (text,
binary, ping/pong, close with its code) on `/upstream/<model>/...` and on the GET model
routes; the lease held for the socket's life unless the model ignores websockets.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import anyio
import pytest
from aiohttp import WSMsgType
from yarl import URL

from .http_helpers import CHAT, chat, error_of, watching
from .server import RunningServer, config_yaml, running_server
from .ws_upstream import ws_upstream

pytestmark = pytest.mark.anyio

DEADLINE = 20


@asynccontextmanager
async def socket(
    http: aiohttp.ClientSession, url: str, **kwargs: object
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """A client websocket that sees pings, pongs and close frames itself."""
    target = URL(url, encoded=True)  # sent byte for byte
    async with http.ws_connect(target, autoping=False, autoclose=False, **kwargs) as ws:  # type: ignore[arg-type]
        yield ws


async def receive(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    with anyio.fail_after(DEADLINE):
        return await ws.receive()


async def load(http: aiohttp.ClientSession, server: RunningServer, model: str) -> None:
    async with http.post(server.url + f"/api/models/load/{model}") as response:
        assert response.status == 200, await response.text()


def in_flight(server: RunningServer) -> dict[str, int]:
    return dict(server.service.router.snapshot.in_flight)


async def test_frames_are_relayed_both_ways_and_close_codes_pass() -> None:
    async with ws_upstream() as upstream:
        yaml = config_yaml(upstream.model("m"))
        async with running_server(yaml) as server:
            async with server.client() as http, watching(server) as watch:
                url = server.url + "/upstream/m/ws?x=%41"
                async with socket(http, url, protocols=("chat", "v2")) as ws:
                    assert ws.protocol == "v2"  # the upstream's choice reaches the client
                    await ws.send_str("hello")
                    assert (await receive(ws)).data == "hello"
                    await ws.send_bytes(b"\x00\x01\xff")
                    message = await receive(ws)
                    assert message.type is WSMsgType.BINARY and message.data == b"\x00\x01\xff"
                    await ws.ping(b"are you there")  # answered by the upstream, not by us
                    message = await receive(ws)
                    assert message.type is WSMsgType.PONG and message.data == b"are you there"
                    await ws.send_str("ping:from-upstream")
                    message = await receive(ws)
                    assert message.type is WSMsgType.PING and message.data == b"from-upstream"
                    await ws.pong(b"from-upstream")
                    assert in_flight(server) == {"m": 1}  # the lease is held while open
                    await ws.close(code=4001, message=b"bye")
                    assert ws.close_code == 4001  # the upstream's answer came back
                await upstream.until(lambda: upstream.closes == [(4001, "bye")])
                await watch.until(watch.idle)  # and the lease ends with the socket
            handshake = upstream.handshakes[0]
            assert handshake.raw_path == "/m/ws?x=%41"
            assert "Sec-WebSocket-Protocol" in handshake.headers

            # the upstream closes first: its code and reason reach the client
            async with server.client() as http, socket(http, server.url + "/upstream/m/") as ws:
                await ws.send_str("close:4002:done")
                message = await receive(ws)
                assert message.type is WSMsgType.CLOSE
                assert (message.data, message.extra) == (4002, "done")
                await ws.close(code=4002)
            async with watching(server) as watch:
                await watch.until(watch.idle)


async def test_a_websocket_loads_its_model_and_holds_it_until_closed() -> None:
    async with ws_upstream() as upstream:
        yaml = config_yaml(upstream.model("a"), upstream.model("b"))
        async with (
            running_server(yaml) as server,
            server.client() as http,
            watching(server) as watch,
        ):
            # WebsocketStartsModelWhenCompatDisabled: an upgrade may load its model
            async with socket(http, server.url + "/upstream/a/ws") as ws:
                assert watch.swaps_to("a") == 1 and watch.state("a") == "ready"
                # b must evict a, whose socket holds it: b waits for the socket
                async with anyio.create_task_group() as tg:
                    answers: list[int] = []

                    async def ask_b() -> None:
                        async with http.get(server.url + "/upstream/b/x") as response:
                            answers.append(response.status)

                    tg.start_soon(ask_b)
                    await watch.until(lambda: watch.server.service.router.snapshot.queued)
                    assert watch.state("a") == "ready" and answers == []
                    await ws.send_str("still here")
                    assert (await receive(ws)).data == "still here"
                    await ws.close()
                assert answers == [200]
            assert watch.state("b") == "ready"
            assert upstream.requests == ["/b/x"]


async def test_an_unload_cuts_a_held_websocket() -> None:
    async with (
        ws_upstream() as upstream,
        running_server(config_yaml(upstream.model("a"))) as server,
    ):
        async with server.client() as http, socket(http, server.url + "/upstream/a/ws") as ws:
            async with http.post(server.url + "/api/models/unload/a") as response:
                assert response.status == 200
            message = await receive(ws)
            assert message.type is WSMsgType.CLOSE and message.data == 1001
            assert "cut short" in message.extra
        await upstream.until(lambda: upstream.open_sockets == 0)


async def test_ignored_websockets_never_start_a_model() -> None:
    async with ws_upstream(healthy=False) as upstream:
        yaml = config_yaml(upstream.model("a", "compat: {ignoreWebsockets: true}"))
        async with (
            running_server(yaml) as server,
            server.client() as http,
            watching(server) as watch,
        ):
            # stopped: 409, nothing starts, nothing reaches the upstream
            async with http.get(server.url + "/upstream/a/ws", headers=upgrade()) as response:
                message = await error_of(response, 409)
            assert message == "model a is not loaded; ignored websocket requests cannot start it"
            assert watch.states("a") == [] and upstream.handshakes == []
            # starting: still 409, and no second start
            async with anyio.create_task_group() as tg:
                tg.start_soon(load, http, server, "a")
                await watch.until(lambda: watch.state("a") == "starting")
                assert await refused(http, server.url + "/props?model=a") == 409
                assert watch.swaps_to("a") == 1 and upstream.handshakes == []
                upstream.healthy.set()
            await watch.until(lambda: watch.state("a") == "ready")
            # ready: relayed, and it holds nothing (not in flight)
            async with socket(http, server.url + "/props?model=a") as ws:
                await ws.send_str("x")
                assert (await receive(ws)).data == "x"
                assert in_flight(server) == {}
                await ws.close()
            assert upstream.handshakes[-1].raw_path == "/a/props?model=a"


async def test_an_ignored_websocket_does_not_block_a_swap_and_goes_with_its_model() -> None:
    async with ws_upstream() as upstream:
        yaml = config_yaml(
            upstream.model("a", "compat: {ignoreWebsockets: true}"), upstream.model("b")
        )
        async with running_server(yaml) as server, server.client() as http:
            await load(http, server, "a")
            async with socket(http, server.url + "/upstream/a/ws") as ws:
                # b evicts a at once although a's socket is open
                async with http.get(server.url + "/upstream/b/x") as response:
                    assert response.status == 200
                assert server.service.router.model_state("a") != "ready"
                # the socket went with its model
                message = await receive(ws)
                assert message.type is WSMsgType.CLOSE and message.data == 1001
                assert "model a is" in message.extra
            await upstream.until(lambda: upstream.open_sockets == 0)


async def test_an_ignored_websocket_does_not_keep_its_model_from_its_ttl() -> None:
    async with ws_upstream() as upstream:
        yaml = config_yaml(upstream.model("a", "ttl: 1\ncompat: {ignoreWebsockets: true}"))
        async with (
            running_server(yaml) as server,
            server.client() as http,
            watching(server) as watch,
        ):
            await load(http, server, "a")
            async with socket(http, server.url + "/upstream/a/ws") as ws:
                await watch.until(lambda: watch.state("a") == "stopped", within=DEADLINE)
                message = await receive(ws)
                assert message.type is WSMsgType.CLOSE and message.data == 1001


async def test_an_ignored_websocket_reserves_no_spillover_target() -> None:
    async with ws_upstream() as upstream:
        yaml = config_yaml(
            upstream.model("a", "compat: {ignoreWebsockets: true}"),
            upstream.model("b"),
            upstream.model("c"),
            top="""
            groups:
              balanced: {swap: false, members: [a, b, c]}
            selectors:
              balanced:
                strategy: spillover
                targets: [a, b, c]
            """,
        )
        async with running_server(yaml) as server, server.client() as http:
            for model in ("a", "b", "c"):
                await load(http, server, model)
            url = server.url + "/props?model=balanced"
            async with socket(http, url) as first, socket(http, url) as second:
                # round robin over equally idle targets: a, then b; had a's socket kept
                # its reservation, the second would have gone to c (b and c tied)
                assert [h.raw_path for h in upstream.handshakes] == [
                    "/a/props?model=a",
                    "/b/props?model=b",
                ]
                await first.close()
                await second.close()


async def test_websockets_to_a_peer_carry_the_peers_key() -> None:
    async with ws_upstream() as upstream:
        yaml = config_yaml(
            upstream.model("local"),
            top=f"""
            apiKeys: [client-key]
            peers:
              p:
                proxy: {upstream.url}/peer
                apiKey: peer-key
                models: [m]
            """,
        )
        async with running_server(yaml) as server, server.client() as http:
            headers = {"Authorization": "Bearer client-key"}
            async with socket(http, server.url + "/upstream/p/m/ws", headers=headers) as ws:
                await ws.send_str("via peer")
                assert (await receive(ws)).data == "via peer"
                await ws.close()
            seen = upstream.handshakes[-1]
            assert seen.raw_path == "/peer/ws"
            assert seen.headers["Authorization"] == "Bearer peer-key"
            assert seen.headers["x-api-key"] == "peer-key"


async def test_handshakes_that_fail() -> None:
    async with (
        ws_upstream() as upstream,
        running_server(config_yaml(upstream.model("a"))) as server,
    ):
        async with server.client() as http:
            # a malformed handshake (no Sec-WebSocket-Key) is the client's fault
            async with http.get(server.url + "/upstream/a/ws", headers=upgrade()) as response:
                assert "handshake" in await error_of(response, 400)
            # an upstream that does not speak websocket on that path: its refusal
            assert await refused(http, server.url + "/upstream/a/health") == 502
        assert server.service.router.snapshot.in_flight == {}
    # POST with upgrade headers is plain HTTP (nothing can be upgraded but a GET)
    async with (
        ws_upstream() as upstream,
        running_server(config_yaml(upstream.model("a"))) as server,
        server.client() as http,
    ):
        headers = {"Connection": "Upgrade", "Upgrade": "websocket"}
        async with http.post(server.url + CHAT, json=chat("a"), headers=headers) as response:
            assert response.status == 200
            assert json.loads(await response.text()) == {"path": "/a/v1/chat/completions"}


def upgrade() -> dict[str, str]:
    """Upgrade headers without a key: llama-swap's tests send just these two."""
    return {"Connection": "keep-alive, Upgrade", "Upgrade": "websocket"}


async def refused(http: aiohttp.ClientSession, url: str) -> int:
    """The status of a websocket handshake that is expected to be refused."""
    try:
        async with http.ws_connect(url) as ws:
            await ws.close()
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status
    raise AssertionError(f"{url} accepted the websocket")
