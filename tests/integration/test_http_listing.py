"""GET /v1/models and /models (§2.6): fields, unlisted models hidden, aliases per
includeAliasesInList, peer models, loaded status."""

from __future__ import annotations

import time
from typing import Any

import pytest

from .http_helpers import idle_model
from .server import config_yaml, running_server

pytestmark = pytest.mark.anyio

PEERS = """
profiles:
  p:
    pins:
      chatbot: c-fast
      a1: c
      gone: ""
peers:
  p1:
    proxy: http://127.0.0.1:9
    models: [m1, org/m2]
"""


def by_id(listing: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {record["id"]: record for record in listing["data"]}


async def test_listing_fields_aliases_unlisted_and_peers() -> None:
    yaml = config_yaml(
        idle_model(
            "a",
            extra="""
            name: '  Model A  '
            description: ' the first '
            aliases: [a1, a2]
            metadata: {family: llama, size: 7}
            """,
        ),
        idle_model("b", extra="unlisted: true\naliases: [b1]"),
        idle_model(
            "c",
            extra="""
            filters:
              setParamsByID:
                c-fast: {temperature: 0.1}
            capabilities: {in: [text, image], out: [text], tools: true, context: 8192}
            """,
        ),
        top="includeAliasesInList: true\n" + PEERS,
    )
    async with running_server(yaml) as server, server.client() as http:
        before = int(time.time())
        for path in ("/v1/models", "/models"):
            async with http.get(server.url + path) as response:
                assert response.status == 200
                listing = await response.json()
            assert listing["object"] == "list"
            ids = [record["id"] for record in listing["data"]]
            assert ids == sorted(ids)
            assert set(ids) == {"a", "a1", "a2", "c", "c-fast", "p1/m1", "p1/org/m2"}, ids
            created = {record["created"] for record in listing["data"]}
            assert len(created) == 1 and abs(created.pop() - before) <= 2
            for record in listing["data"]:
                assert record["object"] == "model"
                assert isinstance(record["owned_by"], str) and record["owned_by"]
            records = by_id(listing)
            a = records["a"]
            assert a["name"] == "Model A"
            assert a["description"] == "the first"
            meta = a["meta"]["llamaswap"]
            assert meta["family"] == "llama" and meta["size"] == 7
            assert meta["type"] == "model"
            assert meta["aliases"] == ["a1", "a2"]
            alias = records["a1"]
            assert alias["name"] == "Model A"
            assert alias["meta"]["llamaswap"]["type"] == "alias"
            assert alias["meta"]["llamaswap"]["modelID"] == "a"
            assert alias["meta"]["llamaswap"]["family"] == "llama"
            c = records["c"]
            assert "name" not in c and "description" not in c
            assert c["meta"]["llamaswap"]["aliases"] == ["c-fast"]
            assert c["context_length"] == 8192
            assert c["capabilities"]["vision"] is True
            assert c["capabilities"]["function_calling"] is True
            assert c["architecture"]["modality"] == "text+image->text"
            assert c["supported_parameters"] == ["tools", "tool_choice"]
            peer = records["p1/org/m2"]
            assert peer["name"] == "p1: org/m2"
            assert peer["meta"]["llamaswap"] == {"type": "peer", "peerID": "p1"}
            assert all(record["status"]["value"] == "unloaded" for record in listing["data"])

        # loaded status follows the process; unlisted models stay usable
        async with http.post(server.url + "/api/models/load/a2") as response:
            assert response.status == 200
        async with http.get(server.url + "/v1/models") as response:
            records = by_id(await response.json())
        assert {i for i, r in records.items() if r["status"]["value"] == "loaded"} == {
            "a",
            "a1",
            "a2",
        }
        async with http.post(server.url + "/api/models/load/b1") as response:
            assert response.status == 200
        assert server.service.router.model_state("b") == "ready"
        async with http.get(server.url + "/v1/models") as response:
            records = by_id(await response.json())
        assert "b" not in records and "b1" not in records
        assert all(r["status"]["value"] == "unloaded" for r in records.values())

        # an active profile's pins are listed, unless disabled or already a name
        async with http.put(server.url + "/api/profiles/active", json={"name": "p"}) as response:
            assert response.status == 200
        async with http.get(server.url + "/v1/models") as response:
            records = by_id(await response.json())
        assert set(records) == {"a", "a1", "a2", "c", "c-fast", "p1/m1", "p1/org/m2", "chatbot"}
        assert records["chatbot"]["meta"]["llamaswap"]["type"] == "profile"
        assert records["a1"]["meta"]["llamaswap"]["type"] == "alias"


async def test_aliases_hidden_without_include_aliases_in_list() -> None:
    yaml = config_yaml(
        idle_model("a", extra="aliases: [a1]"), idle_model("z", extra="unlisted: true")
    )
    async with running_server(yaml) as server, server.client() as http:
        for path in ("/v1/models", "/models"):
            async with http.get(server.url + path) as response:
                listing = await response.json()
            assert [record["id"] for record in listing["data"]] == ["a"]
            assert listing["data"][0]["meta"]["llamaswap"]["aliases"] == ["a1"]
            assert "name" not in listing["data"][0]
