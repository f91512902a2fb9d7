"""Chaos upstreams: servers that crash mid-stream, never become healthy, turn into 500s,
take too long to die, leave children behind or exit the moment they start. Each is its
own model next to a well-behaved one (`ok`); after each scenario llamaswap must still
answer /health and serve `ok`."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import time

import aiohttp
import anyio
import pytest

from llamaswap.config import parse_config
from llamaswap.testing import FORK_WRAPPER, upstream_command

from ..integration.helpers import pid_alive
from ..integration.http_helpers import CHAT, assert_error, chat, content_text, error_of, sse_events
from ..integration.server import RunningServer, config_yaml, fake_model, running_server
from .conftest import SLOW, SLOW_REASON, Reaper, serving, wait_dead, wait_until, with_model

pytestmark = pytest.mark.anyio

WRAPPER_CHILD = re.compile(r"wrapper child pid (\d+)")


def wrapped_model(name: str, *, env: str = "") -> str:
    """A model whose `cmd` is fork_wrapper.sh: the real server is the wrapper's child."""
    argv = [str(FORK_WRAPPER), *upstream_command("${PORT}", "--silent", "--model", name)]
    lines = [f"  {name}:", f"    cmd: {shlex.join(argv)}", "    proxy: http://127.0.0.1:${PORT}"]
    if env:
        lines.append(f"    env: [{env}]")
    return "\n".join(lines)


def wrapper_child(server: RunningServer, model: str, after: int = 0) -> int:
    """The pid the wrapper printed (`wrapper child pid N`), from lines after `after`."""
    ring = server.service.model_log(model)
    assert ring is not None
    for line in ring.lines()[after:]:
        if match := WRAPPER_CHILD.search(line):
            return int(match.group(1))
    raise AssertionError(f"no wrapper child pid in {ring.lines()}")


async def assert_still_serving(server: RunningServer, http: aiohttp.ClientSession) -> None:
    """/health is OK and the well-behaved model `ok` answers."""
    async with http.get(server.url + "/health") as response:
        assert response.status == 200
        assert await response.text() == "OK"
    async with http.post(server.url + CHAT, json=chat("ok")) as response:
        assert response.status == 200, await response.text()
        body = await response.json()
        assert body["choices"][0]["message"]["content"]


async def start_failure(http: aiohttp.ClientSession, server: RunningServer, model: str) -> str:
    """A request for `model` fails as a start failure (5xx, shaped); returns the message."""
    started = time.monotonic()
    async with http.post(server.url + CHAT, json=chat(model)) as response:
        text = await response.text()
        assert 500 <= response.status < 600, (response.status, text)
        assert response.content_type == "application/json", text
        message = assert_error(json.loads(text), code="start_failed")
    assert time.monotonic() - started < 20
    return message


async def test_crash_mid_stream_ends_the_stream_and_the_next_request_restarts() -> None:
    yaml = config_yaml(
        fake_model("crash", "--crash-mid-stream", "--chunks", "6", "--chunk-gap", "0.02"),
        fake_model("ok"),
    )
    async with running_server(yaml) as server, server.client() as http:
        router = server.service.router
        async with http.post(server.url + "/api/models/load/crash") as response:
            assert response.status == 200
        first_pid = router.processes["crash"].pid
        assert first_pid is not None

        truncated = False
        events = []
        async with http.post(server.url + CHAT, json=chat("crash", stream=True)) as response:
            assert response.status == 200
            try:
                events = await sse_events(response)
            except aiohttp.ClientPayloadError:
                truncated = True  # a cut connection is an acceptable way to say it
        errors = [e.json() for e in events if e.data != "[DONE]" and '"error"' in e.data]
        # the client learns the stream broke: an error event or a truncated body, and
        # never a clean end of three chunks out of six
        assert truncated or errors, [e.data for e in events]
        for error in errors:
            assert "upstream" in assert_error(error)
        assert content_text([e for e in events if '"error"' not in e.data]) != "hi" * 6

        # llamaswap notices the exit, and the next request starts a fresh upstream
        await wait_until(server, lambda: router.model_state("crash") == "failed", within=10)
        assert "exited unexpectedly" in router.model_fault("crash")
        assert not pid_alive(first_pid)
        async with http.post(server.url + CHAT, json=chat("crash")) as response:
            assert response.status == 200
        assert router.processes["crash"].pid not in (None, first_pid)
        await assert_still_serving(server, http)


async def test_never_healthy_fails_naming_the_health_check() -> None:
    # healthCheckTimeout has a 15 s floor in the YAML; the runtime value is lowered here
    # so the test takes seconds (test_never_healthy_with_the_config_minimum uses the floor)
    yaml = config_yaml(fake_model("sick", "--never-healthy"), fake_model("ok"))
    config = with_model(parse_config(yaml), "sick", health_check_timeout=2)
    async with serving(config) as server, server.client() as http:
        router = server.service.router
        for _ in range(2):  # and a second request fails just as clearly
            started = time.monotonic()
            message = await start_failure(http, server, "sick")
            assert "health check timed out after 2s" in message, message
            assert time.monotonic() - started >= 2
            await wait_until(server, lambda: router.model_state("sick") == "failed", within=10)
            assert router.model_fault("sick").startswith("health check timed out after 2s")
            assert router.processes["sick"].pid is None
        await assert_still_serving(server, http)


@pytest.mark.slow
@pytest.mark.skipif(not SLOW, reason=SLOW_REASON)
async def test_never_healthy_with_the_config_minimum() -> None:
    yaml = config_yaml(fake_model("sick", "--never-healthy"), fake_model("ok"))
    assert "healthCheckTimeout: 15" in yaml
    async with running_server(yaml) as server, server.client() as http:
        assert server.config.models["sick"].health_check_timeout == 15
        started = time.monotonic()
        message = await start_failure(http, server, "sick")
        assert "health check timed out after 15s" in message, message
        assert 15 <= time.monotonic() - started < 20
        # the load endpoint reports it the same way
        async with http.post(server.url + "/api/models/load/sick") as response:
            message = await error_of(response, 500)
            assert "health check timed out" in message
        await assert_still_serving(server, http)


async def test_upstream_500s_pass_through_unchanged() -> None:
    yaml = config_yaml(fake_model("flaky", "--fail-after", "2"), fake_model("ok"))
    async with running_server(yaml) as server, server.client() as http:
        router = server.service.router
        for _ in range(2):
            async with http.post(server.url + CHAT, json=chat("flaky")) as response:
                assert response.status == 200
        pid = router.processes["flaky"].pid
        for stream in (False, True, False):
            async with http.post(server.url + CHAT, json=chat("flaky", stream=stream)) as response:
                body = await response.json()
                assert response.status == 500, body
                # the upstream's own error, not one llamaswap made up or hid
                assert body.get("src") != "llamaswap"
                assert "--fail-after 2 reached" in assert_error(body)
        # an upstream answering 500 is still a running upstream: not restarted
        assert router.model_state("flaky") == "ready"
        assert router.processes["flaky"].pid == pid
        await assert_still_serving(server, http)


@pytest.mark.parametrize(
    ("options", "least", "most"),
    [
        (("--slow-stop", "0.5"), 0.4, 1.5),  # stops by itself within unloadTimeout
        (("--slow-stop", "30"), 0.9, 3.0),  # would take 30 s: SIGKILL after 1 s
        (("--ignore-sigterm",), 0.9, 3.0),  # never stops by itself: SIGKILL after 1 s
    ],
    ids=["slow-stop-0.5", "slow-stop-30", "ignore-sigterm"],
)
async def test_slow_to_die_upstreams_are_gone_within_unload_timeout(
    options: tuple[str, ...], least: float, most: float
) -> None:
    yaml = config_yaml(fake_model("slow", *options, extra="unloadTimeout: 1"), fake_model("ok"))
    async with running_server(yaml) as server, server.client() as http:
        router = server.service.router
        async with http.post(server.url + "/api/models/load/slow") as response:
            assert response.status == 200
        pid = router.processes["slow"].pid
        assert pid is not None and pid_alive(pid)
        started = time.monotonic()
        async with http.post(server.url + "/api/models/unload/slow") as response:
            assert response.status == 200
        took = time.monotonic() - started
        assert least <= took <= most, took
        assert not pid_alive(pid)  # gone (and reaped) by the time unload returns
        assert router.model_state("slow") == "stopped"
        # swapping away from it is bounded the same way
        async with http.post(server.url + "/api/models/load/slow") as response:
            assert response.status == 200
        pid = router.processes["slow"].pid
        assert pid is not None
        started = time.monotonic()
        await assert_still_serving(server, http)
        assert time.monotonic() - started <= most + 2
        assert not pid_alive(pid)


async def test_a_forking_wrapper_leaves_no_grandchild(reaper: Reaper) -> None:
    yaml = config_yaml(wrapped_model("wrap"), fake_model("ok"))
    async with running_server(yaml) as server, server.client() as http:
        router = server.service.router
        async with http.post(server.url + CHAT, json=chat("wrap")) as response:
            assert response.status == 200
        wrapper = router.processes["wrap"].pid
        child = reaper.watch(wrapper_child(server, "wrap"))
        assert wrapper is not None and child != wrapper and pid_alive(child)

        # an unload stops the whole process group, not just the wrapper
        async with http.post(server.url + "/api/models/unload/wrap") as response:
            assert response.status == 200
        assert not pid_alive(wrapper)
        assert await wait_dead(child), f"grandchild {child} survived the unload"

        # the wrapper dying by itself (SIGKILL, so it forwards nothing) takes its child too
        seen = len(server.service.model_log("wrap").lines())  # type: ignore[union-attr]
        async with http.post(server.url + CHAT, json=chat("wrap")) as response:
            assert response.status == 200
        wrapper = router.processes["wrap"].pid
        child = reaper.watch(wrapper_child(server, "wrap", after=seen))
        assert wrapper is not None and pid_alive(child)
        os.kill(wrapper, signal.SIGKILL)
        await wait_until(server, lambda: router.model_state("wrap") == "failed", within=10)
        assert await wait_dead(child), f"grandchild {child} outlived its wrapper"

        # and the model starts again on the next request
        async with http.post(server.url + CHAT, json=chat("wrap")) as response:
            assert response.status == 200
        reaper.watch(wrapper_child(server, "wrap", after=seen + 1))
        await assert_still_serving(server, http)
    assert not reaper.kill_all(), "a wrapper's child survived llamaswap's shutdown"


async def test_a_detaching_wrapper_is_a_start_failure_and_its_child_is_killed(
    reaper: Reaper,
) -> None:
    yaml = config_yaml(wrapped_model("daemon", env="FORK_WRAPPER_DETACH=1"), fake_model("ok"))
    async with running_server(yaml) as server, server.client() as http:
        for attempt in range(2):
            message = await start_failure(http, server, "daemon")
            assert "exited prematurely with code 0" in message, message
            children = [
                int(m.group(1))
                for line in server.service.model_log("daemon").lines()  # type: ignore[union-attr]
                if (m := WRAPPER_CHILD.search(line))
            ]
            assert len(children) == attempt + 1, children
            child = reaper.watch(children[-1])
            # still in the wrapper's process group, so it goes with the group
            assert await wait_dead(child), f"detached child {child} survived"
        await assert_still_serving(server, http)


async def test_an_upstream_that_exits_at_once_is_a_clear_start_failure() -> None:
    yaml = config_yaml(fake_model("gone", "--exit-after", "0"), fake_model("ok"))
    async with running_server(yaml) as server, server.client() as http:
        for _ in range(2):
            message = await start_failure(http, server, "gone")
            assert "exited prematurely with code 3" in message, message
            assert "exiting after 0 s" in message, message  # the upstream's last words
        async with http.post(server.url + "/api/models/load/gone") as response:
            assert "exited prematurely" in await error_of(response, 500)
        assert server.service.router.model_state("gone") == "failed"
        await assert_still_serving(server, http)


async def test_every_chaos_upstream_at_once_in_one_server(reaper: Reaper) -> None:
    """All of the above side by side in one server, in a group that keeps them all
    loaded: failures of some never disturb the others."""
    models = ["crash", "flaky", "deaf", "wrap", "gone", "ok"]
    yaml = config_yaml(
        fake_model("crash", "--crash-mid-stream", "--chunks", "4"),
        fake_model("flaky", "--fail-after", "0"),
        fake_model("deaf", "--ignore-sigterm", extra="unloadTimeout: 1"),
        wrapped_model("wrap"),
        fake_model("gone", "--exit-after", "0"),
        fake_model("ok"),
        top=f"groups: {{all: {{swap: false, members: [{', '.join(models)}]}}}}",
    )
    async with running_server(yaml) as server, server.client() as http:

        async def one(model: str, stream: bool) -> int:
            async with http.post(server.url + CHAT, json=chat(model, stream=stream)) as response:
                with contextlib.suppress(aiohttp.ClientPayloadError):
                    await response.read()
                return response.status

        statuses: dict[str, list[int]] = {m: [] for m in models}

        async def hammer(model: str) -> None:
            for i in range(6):
                statuses[model].append(await one(model, stream=bool(i % 2)))

        async with anyio.create_task_group() as tg:
            for model in models:
                tg.start_soon(hammer, model)
        assert statuses["ok"] == [200] * 6
        assert set(statuses["flaky"]) == {500}
        assert set(statuses["gone"]) == {500}
        assert set(statuses["wrap"]) == {200}
        assert set(statuses["deaf"]) == {200}
        assert set(statuses["crash"]) <= {200, 502, 503}
        for line in server.service.model_log("wrap").lines():  # type: ignore[union-attr]
            if match := WRAPPER_CHILD.search(line):
                reaper.watch(int(match.group(1)))
        started = time.monotonic()
        async with http.post(server.url + "/api/models/unload") as response:
            assert response.status == 200
        assert time.monotonic() - started < 4
        assert all(server.service.router.model_state(m) == "stopped" for m in models)
        for pid in reaper.pids:
            assert await wait_dead(pid)
        await assert_still_serving(server, http)
