"""The activity store over HTTP, as llama-swap's dashboards use it: /api/metrics/activity,
/api/metrics/stats, /api/captures/<id>, /api/inflight/<id>/cancel; what is recorded
(model routes and /upstream POSTs to a model route, never the UI's own requests); key
ids; the store surviving a restart; the UI's requests logged at DEBUG."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from llamaswap.config.keys import default_name
from llamaswap.http.inflight import InflightChanged
from llamaswap.runtime.events import RequestFinished

from .server import RunningServer, config_yaml, fake_model, running_server

pytestmark = pytest.mark.anyio

CHAT = "/v1/chat/completions"


def chat(model: str, *, stream: bool = False, text: str = "hi") -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}


async def get_json(http: aiohttp.ClientSession, url: str, status: int = 200) -> Any:
    async with http.get(url) as response:
        assert response.status == status, await response.text()
        return await response.json()


async def test_requests_are_recorded_with_tokens_and_filters_work() -> None:
    yaml = config_yaml(fake_model("a"), fake_model("b", "--respond", "bee"))
    async with running_server(yaml) as server, server.client() as http:
        for model, stream in (("a", False), ("b", True), ("a", True)):
            async with http.post(server.url + CHAT, json=chat(model, stream=stream)) as r:
                assert r.status == 200
                await r.read()
        async with http.post(server.url + "/upstream/a/v1/chat/completions", json=chat("a")) as r:
            await r.read()
        async with http.get(server.url + "/upstream/a/health") as r:  # not a model route
            await r.read()
        async with http.get(server.url + "/v1/models") as r:
            await r.read()
        page = await get_json(http, server.url + "/api/metrics/activity")
        paths = [(e["id"], e["model"], e["req_path"]) for e in page["data"]]
        assert paths == [
            (4, "a", "/upstream/a/v1/chat/completions"),
            (3, "a", CHAT),
            (2, "b", CHAT),
            (1, "a", CHAT),
        ]
        streamed = page["data"][1]
        assert streamed["resp_content_type"].startswith("text/event-stream")
        assert streamed["tokens"]["output_tokens"] > 0 and streamed["tokens"]["input_tokens"] > 0
        assert streamed["tokens"]["tokens_per_second"] > 0 and streamed["method"] == "POST"
        assert "key_id" not in streamed  # no apiKeys
        only_b = await get_json(http, server.url + "/api/metrics/activity?model=b")
        assert [e["id"] for e in only_b["data"]] == [2]
        paged = await get_json(http, server.url + "/api/metrics/activity?limit=3&page=2")
        assert [e["id"] for e in paged["data"]] == [1] and paged["total_pages"] == 2
        stats = await get_json(http, server.url + "/api/metrics/stats?model=a")
        assert stats["total_requests"] == 3 and stats["gen_histogram"] is not None


@pytest.mark.parametrize(
    ("query", "field"),
    [("limit=0", "limit"), ("min_id=abc", "min_id"), ("end=2026-01-01", "end"), ("sort=x", "sort")],
)
async def test_a_bad_filter_is_a_400_naming_the_field(query: str, field: str) -> None:
    async with running_server(config_yaml(fake_model("a"))) as server, server.client() as http:
        body = await get_json(http, f"{server.url}/api/metrics/activity?{query}", 400)
        assert body["error"]["param"] == field and body["error"]["type"] == "invalid_request_error"


async def test_captures_hold_request_and_response_bodies_redacted() -> None:
    yaml = config_yaml(
        fake_model("a", "--chunks", "400"), top="apiKeys: [sekrit]\ncaptureBuffer: 1"
    )
    headers = {"Authorization": "Bearer sekrit"}
    async with running_server(yaml) as server, server.client(headers=headers) as http:
        async with http.post(
            server.url + CHAT, json=chat("a", stream=True, text="capture me")
        ) as r:
            sent = await r.read()
        assert len(sent) > 40_000  # longer than the proxy's own tail: kept whole all the same
        page = await get_json(http, server.url + "/api/metrics/activity")
        entry = page["data"][0]
        assert entry["has_capture"] and entry["key_id"] == default_name("sekrit")
        capture = await get_json(http, f"{server.url}/api/captures/{entry['id']}")
        assert capture["req_headers"]["Authorization"] == "[REDACTED]"
        assert b"capture me" in base64.b64decode(capture["req_body"])
        assert base64.b64decode(capture["resp_body"]) == sent
        assert capture["resp_truncated"] is False
        assert "sekrit" not in json.dumps(capture) and "sekrit" not in json.dumps(page)
        await get_json(http, server.url + "/api/captures/999", 404)
        await get_json(http, server.url + "/api/captures/nope", 400)


async def test_without_capture_buffer_nothing_is_captured() -> None:
    yaml = config_yaml(fake_model("a"), top="captureBuffer: 0")
    async with running_server(yaml) as server, server.client() as http:
        async with http.post(server.url + CHAT, json=chat("a")) as r:
            await r.read()
        page = await get_json(http, server.url + "/api/metrics/activity")
        assert page["data"][0]["has_capture"] is False
        await get_json(http, server.url + "/api/captures/1", 404)


async def test_the_store_survives_a_restart(tmp_path: Path) -> None:
    yaml = config_yaml(fake_model("a"), top=f"store:\n  path: {tmp_path / 'activity.db'}")
    async with running_server(yaml) as server, server.client() as http:
        for _ in range(2):
            async with http.post(server.url + CHAT, json=chat("a")) as r:
                await r.read()
    async with running_server(yaml) as server, server.client() as http:
        async with http.post(server.url + CHAT, json=chat("a")) as r:
            await r.read()
        page = await get_json(http, server.url + "/api/metrics/activity")
        assert [e["id"] for e in page["data"]] == [3, 2, 1]


class InflightIds:
    """The ids of tracked requests, as the bus announces them."""

    def __init__(self, server: RunningServer) -> None:
        self.ids: list[str] = []
        self.seen = anyio.Event()
        server.service.bus.add_listener(self.observe)

    def observe(self, event: object) -> None:
        if isinstance(event, InflightChanged) and event.payload["operation"] == "upsert":
            self.ids.append(event.payload["request"]["id"])
            self.seen.set()

    async def first(self) -> str:
        with anyio.fail_after(10):
            await self.seen.wait()
        return self.ids[0]


async def test_cancel_ends_a_stream_cleanly_and_records_499() -> None:
    slow = fake_model("a", "--chunks", "200", "--chunk-gap", "0.05")
    async with running_server(config_yaml(slow)) as server, server.client() as http:
        finished: list[RequestFinished] = []
        server.service.bus.add_listener(
            lambda e: finished.append(e) if isinstance(e, RequestFinished) else None
        )
        inflight = InflightIds(server)
        async with http.post(server.url + CHAT, json=chat("a", stream=True)) as response:
            assert response.status == 200
            await response.content.readany()  # the stream has started
            entry = await inflight.first()
            async with http.post(f"{server.url}/api/inflight/{entry}/cancel") as cancel:
                assert cancel.status == 200 and await cancel.json() == {"msg": "ok"}
            with anyio.fail_after(10):
                body = await response.read()  # the stream ends: no hang, no broken connection
        events = [line for line in body.decode().split("\n\n") if line.startswith("data:")]
        assert events[-1] == "data: [DONE]"
        error = json.loads(events[-2][5:])["error"]
        assert error["code"] == "request_cancelled"
        assert finished[-1].status == 499
        async with http.post(f"{server.url}/api/inflight/{entry}/cancel") as again:
            assert again.status == 404


async def test_cancel_before_the_answer_is_a_clean_error_response() -> None:
    slow = fake_model("a", "--startup-delay", "30")  # never ready within the test
    async with running_server(config_yaml(slow)) as server, server.client() as http:
        inflight = InflightIds(server)
        async with anyio.create_task_group() as tg:
            result: dict[str, Any] = {}

            async def ask() -> None:
                async with http.post(server.url + CHAT, json=chat("a")) as response:
                    result["status"] = response.status
                    result["body"] = await response.json()

            tg.start_soon(ask)
            entry = await inflight.first()
            async with http.post(f"{server.url}/api/inflight/{entry}/cancel") as cancel:
                assert cancel.status == 200
        assert result["status"] == 499
        assert result["body"]["error"]["code"] == "request_cancelled"


async def test_cancel_while_the_loading_stream_runs_ends_it_cleanly() -> None:
    """The loading-state stream runs in a task group beside the wait for the model; an
    operator's cancel ends both, and the stream closes with an error event and [DONE]."""
    slow = fake_model("a", "--startup-delay", "30", extra="sendLoadingState: true")
    async with running_server(config_yaml(slow)) as server, server.client() as http:
        inflight = InflightIds(server)
        async with http.post(server.url + CHAT, json=chat("a", stream=True)) as response:
            assert response.status == 200
            await response.content.readany()  # the loading text has begun
            entry = await inflight.first()
            async with http.post(f"{server.url}/api/inflight/{entry}/cancel") as cancel:
                assert cancel.status == 200
            with anyio.fail_after(10):
                body = await response.read()
        events = [line for line in body.decode().split("\n\n") if line.startswith("data:")]
        assert events[-1] == "data: [DONE]"
        assert json.loads(events[-2][5:])["error"]["code"] == "request_cancelled"


UI_PATHS = ("/ui/app.js", "/api/specs", "/api/metrics/activity", "/api/performance")


async def test_ui_requests_log_at_debug() -> None:
    yaml = config_yaml(fake_model("a"), top="logLevel: debug")
    async with running_server(yaml) as server, server.client() as http:
        for path in (*UI_PATHS, "/v1/models"):
            async with http.get(server.url + path) as r:
                await r.read()
        lines = [line for line in server.service.proxy_log.lines() if "Request " in line]
    level = {line.split('"')[1].split()[1]: line.split("]")[0] + "]" for line in lines}
    assert level["/v1/models"] == "[INFO]"
    for path in UI_PATHS:
        assert level[path] == "[DEBUG]", path
