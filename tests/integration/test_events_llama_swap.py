"""`/api/events` frames that llama-swap's dashboards read, in llama-swap's wire format
(`data` is a JSON string): `uiConfig`, `profileChanged`, `inflight`; and
`PUT /api/profiles/active` as llama-swap answers it. Ported from llama-swap's
`internal/server/apigroup_test.go` (APIEvents_InitialPayload), `inflight.go`'s event
shapes and `profiles_test.go` (ProfileAPI)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import anyio
import pytest

from llamaswap.http.routes import events as events_route
from llamaswap.runtime.events import RouterSnapshot

from .http_helpers import CHAT, chat, watching
from .server import RunningServer, config_yaml, fake_model, running_server

pytestmark = pytest.mark.anyio

DEADLINE = 20
Frame = dict[str, Any]


class Frames:
    """The client side of /api/events, decoding llama-swap's string `data` too."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.seen: list[Frame] = []

    async def next(self) -> Frame:
        data = ""
        while True:
            line = (await self.response.content.readline()).decode()
            assert line, "the stream ended"
            if line.startswith("data: "):
                data = line.removeprefix("data: ").strip()
            elif line == "\n" and data:
                frame: Frame = json.loads(data)
                self.seen.append(frame)
                return frame

    async def until(self, kind: str, check: Any = None) -> Any:
        """The decoded `data` of the next frame of `kind` (for which `check` holds)."""
        while True:
            frame = await self.next()
            if frame["type"] != kind:
                continue
            assert isinstance(frame["data"], str), frame  # llama-swap's wire format
            data = json.loads(frame["data"])
            if check is None or check(data):
                return data


@asynccontextmanager
async def frames(
    server: RunningServer, http: aiohttp.ClientSession, query: str = ""
) -> AsyncIterator[Frames]:
    with anyio.fail_after(DEADLINE):
        async with http.get(server.url + "/api/events" + query) as response:
            assert response.status == 200
            yield Frames(response)


UI = """
ui:
  activity:
    session_id: [X-Trace-ID]
profiles:
  p: {pins: {chat: a}}
"""


async def test_the_initial_payload_has_llama_swaps_frames() -> None:
    yaml = config_yaml(fake_model("a"), top=UI)
    async with (
        running_server(yaml) as server,
        server.client() as http,
        frames(server, http) as stream,
    ):
        ui = await stream.until("uiConfig")
        assert ui == {"activity": {"session_id": ["X-Trace-ID"]}}
        assert await stream.until("profileChanged") == {"active": None}
        assert await stream.until("inflight") == {"operation": "snapshot"}
        kinds = {frame["type"] for frame in stream.seen}
        # ours stay objects, and come first (the web UI reads them)
        assert {"modelStatus", "routerState", "queue"} <= kinds
        assert all(
            isinstance(f["data"], dict)
            for f in stream.seen
            if f["type"] not in {"uiConfig", "profileChanged", "inflight"}
        )


async def test_profile_changes_as_llama_swap_sends_them() -> None:
    yaml = config_yaml(fake_model("a"), top=UI)
    async with running_server(yaml) as server, server.client() as http:

        async def put(body: bytes) -> tuple[int, Any]:
            headers = {"Content-Type": "application/json"}
            url = server.url + "/api/profiles/active"
            async with http.put(url, data=body, headers=headers) as response:
                return response.status, await response.json()

        async with frames(server, http, "?no-history") as stream:
            assert await stream.until("profileChanged") == {"active": None}
            assert await put(b'{"name": "p"}') == (200, {"active": "p"})
            assert await stream.until("profileChanged") == {"active": "p"}
            # the same profile again: answered, but nothing changed, so no event
            assert await put(b'{"name": "p"}  {"ignored": 1}') == (200, {"active": "p"})
            assert await put(b"null") == (400, _error("profile name is required"))
            assert await put(b'{"name": null}') == (200, {"active": None})
            assert await stream.until("profileChanged") == {"active": None}
            changes = [f for f in stream.seen if f["type"] == "profileChanged"]
            assert len(changes) == 3, changes


def _error(message: str) -> Any:
    return {
        "src": "llamaswap",
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": None,
            "code": "bad_request",
        },
    }


async def test_inflight_requests_are_upserted_then_removed() -> None:
    yaml = config_yaml(fake_model("a", "--chunks", "3"))
    async with (
        running_server(yaml) as server,
        server.client() as http,
        frames(server, http, "?no-history") as stream,
    ):
        await stream.until("inflight")
        headers = {"Authorization": "Bearer hidden", "X-Forwarded-For": "10.1.2.3"}
        async with http.post(
            server.url + "/v/chat/completions?q=1", json=chat("a"), headers=headers
        ) as response:
            assert response.status == 200
            await response.read()
        first = await stream.until("inflight")
        assert first["operation"] == "upsert"
        entry = first["request"]
        assert set(entry) == {
            "id",
            "timestamp",
            "model",
            "req_path",
            "method",
            "req_headers",
            "remote_ip",
            "resp_headers",
            "resp_bytes",
            "elapsed_ms",
        }
        assert entry["model"] == "a"
        assert entry["req_path"] == "/v/chat/completions"  # as the client sent it
        assert entry["method"] == "POST"
        assert entry["req_headers"]["Authorization"] == "[REDACTED]"
        assert entry["req_headers"]["Content-Type"] == "application/json"
        assert entry["remote_ip"] == "127.0.0.1"  # X-Forwarded-For from no trusted proxy
        assert entry["resp_headers"] == {} and entry["resp_bytes"] == 0
        assert entry["timestamp"].endswith("Z") and entry["elapsed_ms"] >= 0
        answered = await stream.until("inflight", lambda d: d["operation"] == "upsert")
        assert answered["request"]["id"] == entry["id"]
        assert answered["request"]["resp_headers"]["Content-Type"].startswith("application/json")
        removed = await stream.until("inflight", lambda d: d["operation"] == "remove")
        assert removed == {"operation": "remove", "id": entry["id"]}

        # /upstream: only a model-routed path, shown as the upstream's path
        async with http.get(server.url + "/upstream/a/health") as response:
            assert response.status == 200
        async with http.post(
            server.url + "/upstream/a/v1/chat/completions", json=chat("a")
        ) as response:
            assert response.status == 200
        shown = await stream.until("inflight", lambda d: d["operation"] == "upsert")
        assert shown["request"]["req_path"] == "/v1/chat/completions"
        paths = [
            json.loads(f["data"]).get("request", {}).get("req_path")
            for f in stream.seen
            if f["type"] == "inflight"
        ]
        assert "/health" not in paths


async def test_a_client_that_lost_events_gets_a_fresh_snapshot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(events_route, "BUFFER", 1)
    async with (
        running_server(config_yaml(fake_model("a"))) as server,
        server.client() as http,
        frames(server, http, "?no-history") as stream,
    ):
        await stream.until("inflight")
        for _ in range(5):  # published at once: a one-event buffer drops four
            server.service.bus.publish(RouterSnapshot({}, {}))
        assert await stream.until("inflight") == {"operation": "snapshot"}


async def test_requests_in_flight_show_in_the_snapshot() -> None:
    yaml = config_yaml(fake_model("a"))
    async with (
        running_server(yaml) as server,
        server.client() as http,
        watching(server) as watch,
        anyio.create_task_group() as tg,
    ):

        async def slow_chat() -> None:
            url = server.url + CHAT + "?wait=30"
            async with http.post(url, json=chat("a", stream=True)) as response:
                await response.read()

        tg.start_soon(slow_chat)
        await watch.until(lambda: bool(server.service.router.snapshot.in_flight))
        async with frames(server, http, "?no-history") as stream:
            snapshot = await stream.until("inflight")
        assert snapshot["operation"] == "snapshot"
        assert [r["model"] for r in snapshot["requests"]] == ["a"]
        assert snapshot["requests"][0]["req_path"] == CHAT
        tg.cancel_scope.cancel()
