"""The profiles API (`/api/profiles`, `/api/profiles/active`) and `/api/version`."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

import llamaswap

from .server import RunningServer, config_yaml, fake_model, running_server

pytestmark = pytest.mark.anyio

CHAT = "/v1/chat/completions"
PROFILES = """
profiles:
  fast:
    description: chat goes to b, a is off
    pins:
      chat: b
      a: ""
  slow:
    pins:
      chat: a
"""


def chat(model: str) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


async def put_active(
    server: RunningServer, http: aiohttp.ClientSession, **kwargs: Any
) -> tuple[int, Any]:
    async with http.put(server.url + "/api/profiles/active", **kwargs) as response:
        return response.status, await response.json()


async def answering_model(server: RunningServer, http: aiohttp.ClientSession, name: str) -> str:
    """The model that answered a chat request for `name` (the fake names itself)."""
    async with http.post(server.url + CHAT, json=chat(name)) as response:
        assert response.status == 200, await response.text()
        return str((await response.json())["model"])


async def test_list_profiles() -> None:
    yaml = config_yaml(fake_model("a"), fake_model("b"), top=PROFILES)
    async with (
        running_server(yaml) as server,
        server.client() as http,
        http.get(server.url + "/api/profiles") as response,
    ):
        assert response.status == 200
        listing = await response.json()
    assert listing == {
        "active": None,
        "profiles": [
            {
                "id": "fast",
                "description": "chat goes to b, a is off",
                "pins": {"chat": "b", "a": ""},
            },
            {"id": "slow", "description": "", "pins": {"chat": "a"}},
        ],
    }


async def test_activate_route_and_deactivate() -> None:
    yaml = config_yaml(fake_model("a"), fake_model("b"), top=PROFILES)
    async with running_server(yaml) as server, server.client() as http:
        async with http.post(server.url + CHAT, json=chat("chat")) as response:
            assert response.status == 404  # no profile active: `chat` is nobody

        assert await put_active(server, http, json={"name": "fast"}) == (200, {"active": "fast"})
        async with http.get(server.url + "/api/profiles") as response:
            assert (await response.json())["active"] == "fast"
        assert await answering_model(server, http, "chat") == "b"
        async with http.post(server.url + CHAT, json=chat("a")) as response:
            assert response.status == 404  # pinned to "": disabled while `fast` is active

        assert await put_active(server, http, json={"name": "slow"}) == (200, {"active": "slow"})
        assert await answering_model(server, http, "chat") == "a"

        assert await put_active(server, http, json={"name": None}) == (200, {"active": None})
        assert await answering_model(server, http, "a") == "a"
        async with http.post(server.url + CHAT, json=chat("chat")) as response:
            assert response.status == 404

        assert await put_active(server, http, json={"name": "fast"}) == (200, {"active": "fast"})
        assert await put_active(server, http, json={"name": ""}) == (200, {"active": None})
        async with http.get(server.url + "/api/profiles") as response:
            assert (await response.json())["active"] is None


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "invalid profile request"),
        (b"[]", 400, "invalid profile request"),
        (b"{}", 400, "profile name is required"),
        (b'{"name": 3}', 400, "profile name must be a string or null"),
        (b'{"name": "nope"}', 404, 'profile "nope" not found'),
    ],
)
async def test_bad_requests_leave_the_profile_alone(body: bytes, status: int, message: str) -> None:
    yaml = config_yaml(fake_model("a"), fake_model("b"), top=PROFILES)
    async with running_server(yaml) as server, server.client() as http:
        assert await put_active(server, http, json={"name": "fast"}) == (200, {"active": "fast"})
        headers = {"Content-Type": "application/json"}
        answer = await put_active(server, http, data=body, headers=headers)
        assert answer[0] == status
        assert answer[1]["error"]["message"] == message
        assert server.service.active_profile == "fast"


async def test_version() -> None:
    async with (
        running_server(config_yaml(fake_model("a"))) as server,
        server.client() as http,
        http.get(server.url + "/api/version") as response,
    ):
        assert response.status == 200
        body = await response.json()
    assert body == {
        "version": llamaswap.__version__,
        "commit": "unknown",
        "build_date": "unknown",
    }
