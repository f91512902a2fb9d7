"""`/metrics`: Prometheus exposition of swaps, queues, requests and process states."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llamaswap.runtime.events import RequestFinished, Subscription

from .server import RunningServer, config_yaml, fake_model, running_server

pytestmark = pytest.mark.anyio

CHAT = "/v1/chat/completions"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def chat(model: str) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


async def scrape(server: RunningServer, http: aiohttp.ClientSession) -> Samples:
    async with http.get(server.url + "/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def models_in(samples: Samples) -> set[str]:
    return {label for (_, labels) in samples for key, label in labels if key == "model"}


class Events:
    """Every bus event since the test subscribed, to wait for the effects of a request."""

    def __init__(self, subscription: Subscription) -> None:
        self.subscription = subscription
        self.seen: list[object] = []

    async def until(self, done: Callable[[], bool], seconds: float = 20) -> None:
        """Receive events until `done()` holds (it is checked after each one)."""
        with anyio.fail_after(seconds):
            while not done():
                self.seen.append(await self.subscription.receive())

    def finished(self) -> int:
        return sum(isinstance(event, RequestFinished) for event in self.seen)


async def test_swap_and_request_metrics() -> None:
    yaml = config_yaml(fake_model("a"), fake_model("b"))
    async with running_server(yaml) as server, server.client() as http:
        before = await scrape(server, http)
        assert value(before, "llamaswap_model_state", model="a", state="stopped") == 1
        assert value(before, "llamaswap_in_flight", model="a") == 0
        assert value(before, "llamaswap_queue_length", model="b") == 0

        router = server.service.router
        with server.service.bus.subscribe() as subscription:
            events = Events(subscription)
            async with http.post(server.url + CHAT, json=chat("a")) as response:
                assert response.status == 200
            # /v/messages reaches the fake as /messages, which it does not serve: a 404
            async with http.post(server.url + "/v/messages", json=chat("a")) as response:
                assert response.status == 404
            async with http.post(server.url + CHAT, json=chat("nope")) as response:
                assert response.status == 404  # no such model: nothing to count it under
            await events.until(
                lambda: events.finished() == 2 and not router.snapshot.in_flight,
            )
        samples = await scrape(server, http)

    assert value(samples, "llamaswap_swaps_total", model="a") == 1
    assert value(samples, "llamaswap_swaps_total", model="b") is None
    assert value(samples, "llamaswap_swap_failures_total", model="a") is None
    assert value(samples, "llamaswap_load_seconds_count", model="a") == 1
    load_sum = value(samples, "llamaswap_load_seconds_sum", model="a")
    assert load_sum is not None and load_sum > 0
    assert value(samples, "llamaswap_in_flight", model="a") == 0
    assert value(samples, "llamaswap_queue_length", model="a") == 0
    assert value(samples, "llamaswap_request_seconds_count", model="a") == 2
    assert value(samples, "llamaswap_requests_total", model="a", status="200") == 1
    assert value(samples, "llamaswap_requests_total", model="a", status="404") == 1
    assert value(samples, "llamaswap_errors_total", model="a") == 1
    assert value(samples, "llamaswap_model_state", model="a", state="ready") == 1
    assert value(samples, "llamaswap_model_state", model="a", state="starting") == 0
    assert value(samples, "llamaswap_model_state", model="a", state="stopped") == 0
    assert value(samples, "llamaswap_model_state", model="b", state="stopped") == 1
    assert models_in(samples) == {"a", "b"}


async def test_a_failed_swap_is_counted() -> None:
    broken = "  broken:\n    cmd: /bin/false ${PORT}\n    proxy: http://127.0.0.1:${PORT}"
    async with running_server(config_yaml(broken)) as server, server.client() as http:
        with server.service.bus.subscribe() as subscription:
            events = Events(subscription)
            async with http.post(server.url + CHAT, json=chat("broken")) as response:
                assert response.status >= 500
            await events.until(lambda: events.finished() == 1)
        samples = await scrape(server, http)
    assert value(samples, "llamaswap_swaps_total", model="broken") == 1
    assert value(samples, "llamaswap_swap_failures_total", model="broken") == 1
    assert value(samples, "llamaswap_load_seconds_count", model="broken") is None
    assert value(samples, "llamaswap_errors_total", model="broken") == 1
    assert value(samples, "llamaswap_model_state", model="broken", state="failed") == 1
    assert value(samples, "llamaswap_model_state", model="broken", state="stopped") == 0


async def test_disabled_performance_monitor_is_a_503() -> None:
    yaml = config_yaml(fake_model("a"), top="performance:\n  disabled: true")
    async with (
        running_server(yaml) as server,
        server.client() as http,
        http.get(server.url + "/metrics") as response,
    ):
        assert response.status == 503
        assert await response.text() == "# performance monitor not available"


async def test_metrics_need_an_api_key_when_keys_are_set() -> None:
    yaml = config_yaml(fake_model("a"), top="apiKeys: [sekrit]")
    async with running_server(yaml) as server, server.client() as http:
        async with http.get(server.url + "/metrics") as response:
            assert response.status == 401
        headers = {"Authorization": "Bearer sekrit"}
        async with http.get(server.url + "/metrics", headers=headers) as response:
            assert response.status == 200
            assert "llamaswap_model_state" in await response.text()


async def test_each_server_has_its_own_registry() -> None:
    """Two servers in one process: neither sees the other's counts (no global registry)."""
    yaml_one = config_yaml(fake_model("a"))
    yaml_two = config_yaml(fake_model("a"))
    async with (
        running_server(yaml_one) as one,
        running_server(yaml_two) as two,
        one.client() as http,
    ):
        with one.service.bus.subscribe() as subscription:
            events = Events(subscription)
            async with http.post(one.url + CHAT, json=chat("a")) as response:
                assert response.status == 200
            await events.until(lambda: events.finished() == 1)
        assert value(await scrape(one, http), "llamaswap_requests_total", model="a", status="200")
        other = await scrape(two, http)
        assert value(other, "llamaswap_requests_total", model="a", status="200") is None


async def test_a_reload_drops_the_series_of_removed_models_and_adds_new_ones() -> None:
    from llamaswap.config import parse_config
    from llamaswap.server import apply_config

    yaml = config_yaml(fake_model("a"), fake_model("b"))
    async with running_server(yaml) as server, server.client() as http:
        router = server.service.router
        with server.service.bus.subscribe() as subscription:
            events = Events(subscription)
            async with http.post(server.url + CHAT, json=chat("b")) as response:
                assert response.status == 200
            await events.until(lambda: events.finished() == 1 and not router.snapshot.in_flight)
        assert value(await scrape(server, http), "llamaswap_swaps_total", model="b") == 1

        await apply_config(
            server.service, parse_config(config_yaml(fake_model("a"), fake_model("c")))
        )
        samples = await scrape(server, http)
    assert models_in(samples) == {"a", "c"}
    assert value(samples, "llamaswap_model_state", model="c", state="stopped") == 1
    assert value(samples, "llamaswap_in_flight", model="c") == 0
    assert value(samples, "llamaswap_model_state", model="a", state="stopped") == 1
