"""A selector that targets a `setParamsByID` variant (an alias of its model) sends the
variant's name and parameters, as a profile pin to it does. Ported from llama-swap's
`internal/server/selector_test.go` (RewritesBeforeFiltersAndRecordsActivity,
ProfileRunsFirst) and `profiles_test.go` (JSONAndFilters)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from .http_helpers import CHAT, chat
from .server import config_yaml, fake_model, running_server

pytestmark = pytest.mark.anyio

VARIANTS = """
filters:
  setParamsByID:
    variant: {thinking: true}
"""

SELECTORS = """
groups:
  together: {swap: false, members: [a, b]}
selectors:
  public:
    strategy: pin
    targets: [variant, b]
  warm:
    strategy: warm
    targets: [b, variant]
  balanced:
    strategy: spillover
    targets: [variant, b]
profiles:
  coding:
    pins:
      llm-code: public
      direct: variant
"""


async def upstream_saw(http: aiohttp.ClientSession, url: str, model: str) -> dict[str, Any]:
    """POST a chat for `model`; the JSON body the fake upstream received."""
    async with http.post(url + CHAT, json=chat(model)) as response:
        text = await response.text()
        assert response.status == 200, (model, text)
    seen = json.loads(json.loads(text)["request_body"])
    assert isinstance(seen, dict)
    return seen


async def test_a_selector_sends_the_variants_name_and_parameters() -> None:
    yaml = config_yaml(fake_model("a", extra=VARIANTS), fake_model("b"), top=SELECTORS)
    async with running_server(yaml) as server, server.client() as http:
        # pin, then (a loaded, b not) warm and spillover: each picks the variant
        for name in ("public", "warm", "balanced"):
            seen = await upstream_saw(http, server.url, name)
            assert seen["model"] == "variant" and seen["thinking"] is True, name
        # once b is loaded, warm takes its first target, b, which has no variant
        async with http.post(server.url + "/api/models/load/b") as response:
            assert response.status == 200
        seen = await upstream_saw(http, server.url, "warm")
        assert seen["model"] == "b" and "thinking" not in seen
        # a profile pin runs first, then the selector, then the variant's parameters
        async with http.put(server.url + "/api/profiles/active", json={"name": "coding"}) as r:
            assert r.status == 200
        for name in ("llm-code", "direct"):
            seen = await upstream_saw(http, server.url, name)
            assert seen["model"] == "variant" and seen["thinking"] is True, name


async def test_a_selector_variant_with_use_model_name() -> None:
    extra = VARIANTS + "useModelName: upstream-a\n"
    yaml = config_yaml(fake_model("a", extra=extra), fake_model("b"), top=SELECTORS)
    async with running_server(yaml) as server, server.client() as http:
        seen = await upstream_saw(http, server.url, "public")
        assert seen["model"] == "upstream-a" and seen["thinking"] is True
