"""Streaming through the proxy: SSE chunk timing equal to a direct connection, clients
that leave mid-stream or while queued, and the sendLoadingState progress stream."""

from __future__ import annotations

import re
import time

import aiohttp
import anyio
import pytest

from .http_helpers import (
    CHAT,
    SseEvent,
    assert_error,
    chat,
    content_text,
    idle_model,
    log_lines_matching,
    loud_model,
    reasoning_text,
    sse_events,
    watching,
)
from .server import config_yaml, fake_model, running_server

pytestmark = pytest.mark.anyio

GAP = 0.15
CHUNKS = 6


def offsets(events: list[SseEvent], start: float) -> list[float]:
    return [event.at - start for event in events]


async def test_sse_chunk_timing_through_the_proxy_equals_direct() -> None:
    yaml = config_yaml(
        fake_model("s", "--chunks", str(CHUNKS), "--chunk-gap", str(GAP), "--respond", "tok")
    )
    async with running_server(yaml) as server, server.client() as http:
        async with http.post(server.url + "/api/models/load/s") as response:
            assert response.status == 200
        direct_url = server.config.models["s"].proxy + CHAT

        async def timed(url: str) -> tuple[list[float], list[SseEvent], aiohttp.ClientResponse]:
            started = time.monotonic()
            async with http.post(url, json=chat("s", stream=True)) as response:
                assert response.status == 200
                events = await sse_events(response)
            return offsets(events, started), events, response

        direct, direct_events, _ = await timed(direct_url)
        proxied, proxied_events, response = await timed(server.url + CHAT)
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert response.headers.get("X-Accel-Buffering") == "no"
        assert len(proxied_events) == len(direct_events)
        assert content_text(proxied_events) == content_text(direct_events) == "tok" * CHUNKS
        assert proxied_events[-1].data == "[DONE]"
        # every content chunk reached the client when it reached it directly (±80 ms), so the
        # proxy neither buffers nor batches
        first_direct, first_proxied = direct[0], proxied[0]
        for index in range(1, CHUNKS):
            gap_direct = direct[index] - first_direct
            gap_proxied = proxied[index] - first_proxied
            assert abs(gap_proxied - gap_direct) < 0.08, (index, direct, proxied)
            assert gap_proxied >= (index - 0.5) * GAP, (index, proxied)


async def test_client_leaving_mid_stream_frees_the_slot_and_closes_the_upstream() -> None:
    yaml = config_yaml(
        loud_model("a", "--chunks", "100", "--chunk-gap", "0.1"),
        fake_model("b"),
    )
    async with running_server(yaml) as server, server.client() as http, watching(server) as watch:
        router = server.service.router
        async with http.post(server.url + CHAT, json=chat("a", stream=True)) as response:
            assert response.status == 200
            events = await sse_events(response, limit=2)
            assert len(events) == 2
            assert router.snapshot.in_flight == {"a": 1}
            left_at = time.monotonic()
            response.close()  # the client goes away mid-stream
        await watch.until(lambda: not router.snapshot.in_flight)
        # the upstream saw its client go away (its stream would have run for 10 s)
        lines = await log_lines_matching(server, "a", "POST /v1/chat/completions")
        assert any("cancelled" in line or "disconnected" in line for line in lines), lines
        assert time.monotonic() - left_at < 5
        # and the model is still evictable
        async with http.post(server.url + CHAT, json=chat("b")) as response:
            assert response.status == 200
        assert router.model_state("a") == "stopped"
        assert watch.idle()


async def test_clients_leaving_while_queued_never_trigger_a_load() -> None:
    yaml = config_yaml(
        fake_model("a"),
        fake_model("b", extra="sendLoadingState: true\nconcurrencyLimit: 1"),
        idle_model("c"),
    )
    async with running_server(yaml) as server, server.client() as http, watching(server) as watch:
        router = server.service.router
        async with anyio.create_task_group() as tg:
            done: list[int] = []

            async def busy_a() -> None:
                async with http.post(server.url + CHAT + "?wait=2", json=chat("a")) as response:
                    await response.read()
                    done.append(response.status)

            tg.start_soon(busy_a)
            await watch.until(lambda: router.snapshot.in_flight.get("a") == 1)

            # a plain request for b queues behind a's request, then its client leaves
            plain = anyio.CancelScope()

            async def plain_b() -> None:
                with plain:
                    async with http.post(server.url + CHAT, json=chat("b")) as response:
                        await response.read()
                        pytest.fail(f"the departed request was answered: {response.status}")

            tg.start_soon(plain_b)
            await watch.until(lambda: router.snapshot.queued.get("b") == 1)
            plain.cancel()
            await watch.until(lambda: not router.snapshot.queued.get("b"))

            # a streaming request for b (admitted: the departed one freed b's only slot) gets
            # the loading stream while queued, then leaves
            async with http.post(server.url + CHAT, json=chat("b", stream=True)) as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/event-stream")
                first = await sse_events(response, limit=1)
                assert "loading model: b" in reasoning_text(first)
                assert router.snapshot.queued.get("b") == 1
                response.close()
            await watch.until(lambda: not router.snapshot.queued.get("b"))

            # and its slot is free again too
            again = anyio.CancelScope()

            async def plain_again() -> None:
                with again:
                    async with http.post(server.url + CHAT, json=chat("b")) as response:
                        await response.read()
                        pytest.fail(f"expected to wait in the queue, got {response.status}")

            tg.start_soon(plain_again)
            await watch.until(lambda: router.snapshot.queued.get("b") == 1)
            again.cancel()
            await watch.until(lambda: not router.snapshot.queued.get("b"))
        assert done == [200]
        await watch.until(watch.idle)
        assert watch.swaps_to("b") == 0
        assert watch.states("b") == []
        assert router.model_state("a") == "ready"
        # a is still evictable afterwards
        async with http.post(server.url + "/api/models/load/c") as response:
            assert response.status == 200
        assert router.model_state("a") == "stopped"
        assert watch.swaps_to("b") == 0


async def test_loading_state_stream_shows_progress_then_the_real_stream() -> None:
    yaml = config_yaml(
        fake_model("q"),
        fake_model(
            "a",
            "--startup-delay",
            "1",
            "--respond",
            "real",
            "--chunks",
            "3",
            extra="concurrencyLimit: 2",
        ),
        top="sendLoadingState: true",  # the global default applies to models without their own
    )
    async with running_server(yaml) as server, server.client() as http, watching(server) as watch:
        router = server.service.router
        results: dict[str, tuple[float, list[SseEvent]]] = {}

        async def stream_a(name: str) -> None:
            started = time.monotonic()
            async with http.post(server.url + CHAT, json=chat("a", stream=True)) as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/event-stream")
                assert response.headers.get("X-Accel-Buffering") == "no"
                results[name] = (started, await sse_events(response))

        async with anyio.create_task_group() as tg:
            q_status: list[int] = []

            async def busy_q() -> None:
                async with http.post(server.url + CHAT + "?wait=1.6", json=chat("q")) as response:
                    await response.read()
                    q_status.append(response.status)

            tg.start_soon(busy_q)
            await watch.until(lambda: router.snapshot.in_flight.get("q") == 1)
            tg.start_soon(stream_a, "first")
            await watch.until(lambda: router.snapshot.queued.get("a") == 1)
            tg.start_soon(stream_a, "second")
            await watch.until(lambda: router.snapshot.queued.get("a") == 2)
            # over the limit: a 429 decided before any byte of a loading stream
            async with http.post(server.url + CHAT, json=chat("a", stream=True)) as response:
                assert response.status == 429
                assert response.headers.get("Retry-After") == "1"
                assert response.content_type == "application/json"
                body = await response.json()
                assert_error(body, type_="rate_limit_error")
                assert "reasoning_content" not in str(body)
        assert q_status == [200]
        for name in ("first", "second"):
            _, events = results[name]
            thinking = reasoning_text(events)
            assert "loading model: a" in thinking, thinking
            assert re.search(r"Queue position: #\d", thinking), thinking
            assert re.search(r"Done! \(\d+\.\d+s\)", thinking), thinking
            # then the real stream, on the same response
            assert content_text(events) == "real" * 3
            assert events[-1].data == "[DONE]"
            loading = [e for e in events if "reasoning_content" in e.data]
            real = [e for e in events if '"content"' in e.data]
            assert loading[-1].at <= real[0].at
        assert "Queue position: #1" in reasoning_text(results["first"][1])
        # progress is streamed while waiting, not all at once at the end
        started, events = results["first"]
        loading_times = [e.at for e in events if "reasoning_content" in e.data]
        assert loading_times[0] - started < 1.0
        assert loading_times[-1] - loading_times[0] > 1.0

        # a streaming request to a ready model, or a non-streaming one, gets no loading text
        async with http.post(server.url + CHAT, json=chat("a", stream=True)) as response:
            events = await sse_events(response)
            assert reasoning_text(events) == ""
            assert content_text(events) == "real" * 3
        await router.unload()
        async with http.post(server.url + CHAT, json=chat("a")) as response:
            assert response.status == 200
            assert response.content_type == "application/json"
            assert (await response.json())["choices"][0]["message"]["content"] == "real"
