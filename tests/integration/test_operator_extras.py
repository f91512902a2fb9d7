"""Smaller operator promises: time-ordered log history, profile events, passthrough activity."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from llamaswap.runtime.events import ProfileChanged, RequestFinished

from .server import config_yaml, fake_model, running_server

pytestmark = pytest.mark.anyio


async def test_logs_history_interleaves_proxy_and_upstream_lines_in_order() -> None:
    async with running_server(config_yaml(fake_model("a"))) as server, server.client() as http:
        service = server.service
        service.upstream_log.append("first, from an upstream")
        service.proxy_log.append("second, from llamaswap")
        service.upstream_log.append("third, from an upstream")
        async with http.get(server.url + "/logs") as response:
            text = await response.text()
        positions = [text.index(m) for m in ("first,", "second,", "third,")]
        assert positions == sorted(positions)


async def test_switching_the_profile_is_announced() -> None:
    top = textwrap.dedent(
        """
        profiles:
          fast:
            description: the small model everywhere
            pins: {chat: a}
        """
    )
    events: list[Any] = []
    async with running_server(config_yaml(fake_model("a"), top=top)) as server:
        server.service.bus.add_listener(events.append)
        async with server.client() as http:
            for name in ("fast", None):
                async with http.put(server.url + "/api/profiles/active", json={"name": name}) as r:
                    assert r.status == 200
    changes = [e.active for e in events if isinstance(e, ProfileChanged)]
    assert changes == ["fast", None]


async def test_upstream_passthrough_is_recorded_as_activity() -> None:
    events: list[Any] = []
    async with running_server(config_yaml(fake_model("a"))) as server:
        server.service.bus.add_listener(events.append)
        async with server.client() as http, http.get(server.url + "/upstream/a/test") as r:
            assert r.status == 200
    [record] = [e for e in events if isinstance(e, RequestFinished)]
    assert (record.method, record.path, record.model, record.status) == (
        "GET",
        "/upstream/a/test",
        "a",
        200,
    )
