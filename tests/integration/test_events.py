"""`GET /api/events` through real HTTP: the burst, live model/swap/queue/activity events, the end.

Every wait is on the stream itself (the next frame, or end of stream) under a deadline:
the bus delivers events in order, so no test needs to sleep for the server to catch up.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import anyio
import pytest

from llamaswap.http.routes import events as events_route

from .server import RunningServer, config_yaml, fake_model, running_server

pytestmark = pytest.mark.anyio

Event = dict[str, Any]
DEADLINE = 20
# llama-swap's own frame types keep its wire format: `data` is a JSON string
LLAMA_SWAP_TYPES = {"uiConfig", "profileChanged", "inflight"}


class EventStream:
    """The client side of /api/events: frames in, parsed `{"type", "data"}` events out."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.comments: list[str] = []
        self.seen: list[Event] = []

    async def next(self) -> Event | None:
        """The next event, or None once the server ends the stream."""
        lines: list[str] = []
        while True:
            raw = await self.response.content.readline()
            if not raw:
                assert not lines, f"stream ended inside a frame: {lines}"
                return None
            line = raw.decode().removesuffix("\n")
            if line.startswith(":"):
                self.comments.append(line)
            elif line:
                lines.append(line)
            elif lines:
                break
        assert len(lines) == 2, lines
        assert lines[0] == "event: message"
        assert lines[1].startswith("data: ")
        event: Event = json.loads(lines[1].removeprefix("data: "))
        assert set(event) == {"type", "data"}
        if event["type"] in LLAMA_SWAP_TYPES:
            assert isinstance(event["data"], str)
        else:
            assert isinstance(event["data"], dict)
        self.seen.append(event)
        return event

    async def until(self, wanted: Callable[[Event], bool]) -> Event:
        while True:
            event = await self.next()
            assert event is not None, "the stream ended first"
            if wanted(event):
                return event

    async def until_all(self, *wanted: Callable[[Event], bool]) -> None:
        """Read until every condition has matched some event seen so far (in any order)."""
        while not all(any(test(event) for event in self.seen) for test in wanted):
            assert await self.next() is not None, "the stream ended first"

    async def burst(self) -> list[Event]:
        """The three frames every connection starts with."""
        return [await self.until(lambda _: True) for _ in range(3)]


@asynccontextmanager
async def event_stream(
    server: RunningServer, http: aiohttp.ClientSession, query: str = "?no-history"
) -> AsyncIterator[EventStream]:
    """An open stream; everything inside must finish within DEADLINE seconds."""
    with anyio.fail_after(DEADLINE):
        async with http.get(server.url + "/api/events" + query) as response:
            assert response.status == 200
            yield EventStream(response)


def is_type(kind: str) -> Callable[[Event], bool]:
    return lambda event: event["type"] == kind


def state_of(event: Event, model: str) -> str | None:
    if event["type"] != "modelStatus":
        return None
    return next((m["state"] for m in event["data"]["models"] if m["id"] == model), None)


def two_models(top: str = "") -> str:
    return config_yaml(
        fake_model("b", "--respond", "from-b"),
        fake_model("a", "--respond", "from-a", extra="aliases: [alpha]\nname: Model A"),
        top=top,
    )


async def test_initial_burst_shape_and_headers() -> None:
    async with running_server(two_models()) as server, server.client() as http:
        server.service.proxy_log.append("a line from before the client came")
        async with event_stream(server, http, query="") as stream:
            response = stream.response
            assert response.content_type == "text/event-stream"
            assert response.headers["Cache-Control"] == "no-cache"
            assert response.headers["X-Accel-Buffering"] == "no"
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            models, router, queue = await stream.burst()
            assert models["type"] == "modelStatus"
            assert [m["id"] for m in models["data"]["models"]] == ["a", "b"]
            first = models["data"]["models"][0]
            assert first == {
                "id": "a",
                "name": "Model A",
                "description": "",
                "state": "stopped",
                "reason": "",
                "unlisted": False,
                "aliases": ["alpha"],
            }
            assert router == {"type": "routerState", "data": {"state": "accepting"}}
            assert queue == {"type": "queue", "data": {"queued": {}, "inFlight": {}}}
            history = await stream.until(
                lambda e: e["type"] == "logData" and "before the client" in e["data"]["data"]
            )
            assert history["data"] == {
                "source": "proxy",
                "data": "a line from before the client came",
            }


async def test_no_history_sends_only_live_lines() -> None:
    async with running_server(two_models()) as server, server.client() as http:
        server.service.proxy_log.append("old line")
        async with event_stream(server, http) as stream:
            await stream.burst()
            server.service.proxy_log.append("new line")
            line = await stream.until(is_type("logData"))
            assert line["data"] == {"source": "proxy", "data": "new line"}


async def test_load_shows_starting_then_ready_swap_and_model_log() -> None:
    async with running_server(two_models()) as server, server.client() as http:
        async with event_stream(server, http) as stream:
            await stream.burst()
            async with http.post(server.url + "/api/models/load/a") as response:
                assert response.status == 200
            await stream.until_all(
                lambda e: state_of(e, "a") == "ready",
                lambda e: e["type"] == "swap" and e["data"]["phase"] == "finished",
                lambda e: (
                    e["type"] == "logData"
                    and e["data"]["source"] == "a"
                    and "fake upstream: model=a" in e["data"]["data"]
                ),
            )
        states = [state_of(e, "a") for e in stream.seen if e["type"] == "modelStatus"]
        assert states[:4] == ["stopped", "launching", "starting", "ready"]
        changes = [e["data"] for e in stream.seen if e["type"] == "stateChange"]
        assert [(c["from"], c["to"], c["event"]) for c in changes[:3]] == [
            ("stopped", "launching", "start"),
            ("launching", "starting", "spawned"),
            ("starting", "ready", "healthy"),
        ]
        assert changes[2]["reason"].startswith("ready after ")
        assert all(c["model"] == "a" and c["at"] > 0 for c in changes)
        assert all(state_of(e, "b") == "stopped" for e in stream.seen if e["type"] == "modelStatus")
        swaps = [e["data"] for e in stream.seen if e["type"] == "swap"]
        assert swaps[0] == {"phase": "started", "target": "a", "evict": []}
        assert swaps[1]["phase"] == "finished"
        assert swaps[1]["target"] == "a"
        assert swaps[1]["error"] == ""
        assert swaps[1]["seconds"] >= 0


async def test_chat_request_shows_in_flight_then_activity() -> None:
    async with running_server(two_models()) as server, server.client() as http:
        async with event_stream(server, http) as stream:
            await stream.burst()
            body = {"model": "alpha", "messages": [{"role": "user", "content": "hi"}]}
            async with http.post(server.url + "/v1/chat/completions", json=body) as response:
                assert response.status == 200
                await response.read()
            activity = await stream.until(is_type("activity"))
        data = activity["data"]
        assert data["method"] == "POST"
        assert data["path"] == "/v1/chat/completions"
        assert data["model"] == "a"
        assert data["status"] == 200
        assert data["duration"] > 0
        assert data["tokensPerSecond"] is None or data["tokensPerSecond"] > 0
        assert isinstance(data["at"], float)
        queues = [e["data"] for e in stream.seen if e["type"] == "queue"]
        assert {"queued": {}, "inFlight": {"a": 1}} in queues


async def test_client_leaving_ends_the_stream_and_frees_its_subscriptions() -> None:
    # the UI's own /api/events is logged at DEBUG
    async with running_server(two_models("logLevel: debug")) as server, server.client() as http:
        service = server.service
        before = len(service.bus._subscriptions)
        with service.proxy_log.follow() as access:
            async with event_stream(server, http) as stream:
                await stream.burst()
                assert len(service.bus._subscriptions) == before + 1
            # leaving the block closes the connection; the handler ends and is logged
            with anyio.fail_after(DEADLINE):
                async for line in access:
                    if '"GET /api/events?no-history HTTP/1.1"' in line.text:
                        break
        assert len(service.bus._subscriptions) == before


async def test_shutdown_ends_the_stream() -> None:
    async with running_server(two_models()) as server, server.client() as http:
        async with event_stream(server, http) as stream:
            await stream.burst()
            async with anyio.create_task_group() as tg:
                tg.start_soon(server.service.router.shutdown, 2)
                while await stream.next() is not None:
                    pass
        router_states = [e["data"]["state"] for e in stream.seen if e["type"] == "routerState"]
        assert router_states[-1] == "draining"


async def test_keepalive_comment_when_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events_route, "KEEPALIVE_SECONDS", 0.05)
    async with (
        running_server(two_models()) as server,
        server.client() as http,
        event_stream(server, http) as stream,
    ):
        await stream.burst()
        while await stream.response.content.readline() != b": keepalive\n":
            pass


async def test_api_key_is_required_when_configured() -> None:
    yaml = config_yaml(fake_model("a"), top="apiKeys: [sekrit]")
    async with running_server(yaml) as server, server.client() as http:
        async with http.get(server.url + "/api/events") as response:
            assert response.status == 401
        headers = {"Authorization": "Bearer sekrit"}
        async with http.get(server.url + "/api/events", headers=headers) as response:
            assert response.status == 200
            models = await EventStream(response).next()
            assert models is not None
            assert models["type"] == "modelStatus"
