"""Clients written for llama.cpp's router mode (llama-swap #1033): `/props` without a
model describes the router, and `/models` carries the router's record fields, as
llama.cpp's `server-models.cpp` (`get_router_props`, `get_router_models`) answers.
The checks follow what such clients read (pi-llama-cpp: `role`, `status.value`,
`status.args`; pi-llama: `architecture.input_modalities`)."""

from __future__ import annotations

from typing import Any

import aiohttp
import anyio
import pytest

import llamaswap

from .http_helpers import watching
from .server import RunningServer, config_yaml, fake_model, running_server
from .ws_upstream import ws_upstream

pytestmark = pytest.mark.anyio


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as response:
        assert response.status == 200, (url, await response.text())
        return await response.json()


async def records(http: aiohttp.ClientSession, server: RunningServer, path: str) -> Any:
    listing = await get_json(http, server.url + path)
    return {record["id"]: record for record in listing["data"]}


async def test_props_without_a_model_describes_the_router() -> None:
    async with running_server(config_yaml(fake_model("a"))) as server, server.client() as http:
        for query in ("", "?model=", "?autoload=false"):
            props = await get_json(http, server.url + "/props" + query)
            assert props == {
                "role": "router",
                "max_instances": 0,
                "models_autoload": True,
                "model_alias": "llamaswap",
                "model_path": "none",
                "default_generation_settings": {"params": {}, "n_ctx": 0},
                "ui_settings": {},
                "build_info": f"llamaswap {llamaswap.__version__}",
                "cors_proxy_enabled": False,
            }
        assert server.service.router.model_state("a") == "stopped"
        # with a model it is that model's own /props, from its upstream
        props = await get_json(http, server.url + "/props?model=a")
        assert "role" not in props and "default_generation_settings" in props


async def test_models_has_the_router_fields_and_v1_models_stays_as_it_was() -> None:
    async with ws_upstream(healthy=False) as upstream:
        yaml = config_yaml(
            upstream.model("a", "aliases: [a1]\nname: Model A"),
            upstream.model("v", "capabilities: {in: [text, image], out: [text]}"),
            fake_model("crashes", "--exit-after", "0"),
            top=f"peers:\n  p:\n    proxy: {upstream.url}\n    models: [m]",
        )
        async with running_server(yaml) as server, server.client() as http:
            router = await records(http, server, "/models")
            plain = await records(http, server, "/v1/models")
            assert set(router) == set(plain) == {"a", "v", "crashes", "p/m"}
            for model_id, record in router.items():
                # llama-swap's record, with the router's fields added
                extra = {"aliases", "tags", "architecture", "source", "can_remove"}
                assert set(record) - set(plain[model_id]) <= extra, model_id
                assert record["tags"] == [] and record["source"] == "preset"
                assert record["can_remove"] is False
                assert "tags" not in plain[model_id]
            a = router["a"]
            assert a["name"] == "Model A" and a["aliases"] == ["a1"]
            assert a["owned_by"] == plain["a"]["owned_by"]
            assert a["architecture"] == {
                "input_modalities": ["text"],
                "output_modalities": ["text"],
            }
            assert "architecture" not in plain["a"]
            assert a["status"] == {"value": "unloaded", "args": ["sleep", "600"]}
            assert router["v"]["architecture"]["input_modalities"] == ["text", "image"]
            assert router["p/m"]["status"] == {"value": "unloaded"}

            async with watching(server) as watch, anyio.create_task_group() as tg:
                tg.start_soon(get_json, http, server.url + "/upstream/a/x")  # loads a
                await watch.until(lambda: watch.state("a") == "starting")
                router = await records(http, server, "/models")
                assert router["a"]["status"]["value"] == "loading"
                assert (await records(http, server, "/v1/models"))["a"]["status"] == {
                    "value": "loaded"  # llama-swap's word for a starting model
                }
                upstream.healthy.set()
                await watch.until(lambda: watch.state("a") == "ready")
            router = await records(http, server, "/models")
            assert router["a"]["status"]["value"] == "loaded"

            async with http.post(server.url + "/api/models/load/crashes") as response:
                assert response.status >= 500
            status = (await records(http, server, "/models"))["crashes"]["status"]
            assert status["value"] == "unloaded" and status["failed"] is True
            assert status["args"][-2:] == ["--exit-after", "0"]
