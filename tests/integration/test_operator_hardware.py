"""/api/hardware, /api/performance and the hardware gauges of /metrics over HTTP."""

from __future__ import annotations

import pytest

from .server import config_yaml, fake_model, running_server

pytestmark = pytest.mark.anyio


async def test_hardware_performance_and_gauges() -> None:
    async with running_server(config_yaml(fake_model("a"))) as server, server.client() as http:
        async with http.get(server.url + "/api/hardware") as response:
            assert response.status == 200
            snapshot = await response.json()
        assert snapshot["schema_version"] == 1 and snapshot["memory"]["capacity_bytes"] > 0
        async with http.get(server.url + "/api/performance") as response:
            assert response.status == 200
            body = await response.json()
        assert body["enabled"] is True and body["sys_stats"]  # the first sample is immediate
        newest = body["sys_stats"][-1]["timestamp"]
        async with http.get(server.url + "/api/performance", params={"after": newest}) as response:
            assert (await response.json())["sys_stats"] == []
        async with http.get(server.url + "/api/performance?after=yesterday") as response:
            assert response.status == 400
        async with http.get(server.url + "/metrics") as response:
            text = await response.text()
        assert "llamaswap_cpu_util_percent{core=" in text
        assert "llamaswap_memory_total_bytes " in text
        assert "llamaswap_requests_total" in text or "llamaswap_model_state" in text


async def test_performance_disabled_is_llama_swaps_503() -> None:
    yaml = config_yaml(fake_model("a"), top="performance:\n  disabled: true")
    async with running_server(yaml) as server, server.client() as http:
        async with http.get(server.url + "/api/performance") as response:
            assert response.status == 503
            assert await response.json() == {"enabled": False}
        async with http.get(server.url + "/api/hardware") as response:
            assert response.status == 200  # static facts need no monitor
