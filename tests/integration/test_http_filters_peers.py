"""What the upstream receives after routing: profiles → selectors → aliases → filters
(useModelName, stripParams, setParams, setParamsByID, `model` protected), and peers
(another llamaswap as the peer): FQN rewrite, apiKey injection, the peer's own filters."""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
import pytest
from yarl import URL

from .helpers import free_port
from .http_helpers import (
    CHAT,
    chat,
    content_text,
    error_of,
    recording_upstream,
    sse_events,
    watching,
)
from .server import config_yaml, fake_model, running_server

pytestmark = pytest.mark.anyio


async def upstream_saw(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any], **kwargs: Any
) -> dict[str, Any]:
    """POST a chat request; returns the JSON body the (fake) upstream received."""
    async with http.post(url + CHAT, json=body, **kwargs) as response:
        text = await response.text()
        assert response.status == 200, (response.status, text)
        answer = json.loads(text)
    raw = answer["request_body"]
    assert answer["h_content_length"] == str(len(raw.encode())), answer
    seen = json.loads(raw)
    assert isinstance(seen, dict)
    seen["__authorization"] = answer["h_authorization"]
    return seen


FILTERED_A = """
useModelName: upstream-a
aliases: [a-alias]
filters:
  stripParams: "temperature, top_p, model, , top_p"
  setParams:
    max_tokens: 77
    model: hacked
    nested.deep: 1
    tags: [x, y]
  setParamsByID:
    a: {seed: 42}
    a-fast: {max_tokens: 5, reasoning: {effort: low}}
"""

PROFILES_AND_SELECTORS = """
profiles:
  fast:
    description: quick answers
    pins:
      chatbot: a-fast
      off: ""
      via-selector: auto
      bpin: b-alias
selectors:
  auto:
    strategy: pin
    targets: [b]
"""


async def test_filters_profiles_selectors_as_the_upstream_sees_them() -> None:
    yaml = config_yaml(
        fake_model("a", extra=FILTERED_A),
        fake_model("b", extra="aliases: [b-alias]\nfilters:\n  setParams: {stop: [END]}"),
        top=PROFILES_AND_SELECTORS,
    )
    async with running_server(yaml) as server, server.client() as http:
        url = server.url
        seen = await upstream_saw(http, url, chat("a", temperature=0.5, top_p=0.9, keep=1))
        assert (
            seen["model"] == "upstream-a"
        )  # useModelName; `model` can be neither stripped nor set
        assert "temperature" not in seen and "top_p" not in seen
        assert seen["keep"] == 1 and seen["messages"] == [{"role": "user", "content": "hi"}]
        assert seen["max_tokens"] == 77
        assert seen["tags"] == ["x", "y"]
        assert seen["nested"] == {"deep": 1}
        assert seen["seed"] == 42  # setParamsByID for the name asked for

        # a setParamsByID key is an alias of its model; its params override setParams
        seen = await upstream_saw(http, url, chat("a-fast", max_tokens=1000))
        assert seen["model"] == "upstream-a"
        assert seen["max_tokens"] == 5
        assert seen["reasoning"] == {"effort": "low"}
        assert "seed" not in seen
        seen = await upstream_saw(http, url, chat("a-alias"))
        assert seen["model"] == "upstream-a" and seen["max_tokens"] == 77 and "seed" not in seen

        # multipart: only the model name is rewritten; the file arrives intact
        form = aiohttp.FormData()
        form.add_field("model", "a-alias")
        form.add_field("temperature", "0.3")
        form.add_field("file", b"\x00\x01" * 500, filename="f.wav", content_type="audio/wav")
        async with http.post(url + "/v1/audio/transcriptions", data=form) as response:
            assert response.status == 200, await response.text()
            transcript = await response.json()
        assert transcript["model"] == "upstream-a"
        assert transcript["text"] == "The length of the file is 1000 bytes"

        # profiles: not active yet, so their pins are unknown names
        async with http.post(url + CHAT, json=chat("chatbot")) as response:
            await error_of(response, 404)
        async with http.put(url + "/api/profiles/active", json={"name": "fast"}) as response:
            assert response.status == 200
        # pin → alias (setParamsByID of the pinned name) → filters
        seen = await upstream_saw(http, url, chat("chatbot"))
        assert seen["model"] == "upstream-a" and seen["max_tokens"] == 5

        # without useModelName the name asked for (an alias) reaches the upstream as is
        seen = await upstream_saw(http, url, chat("b-alias", stop=["x"]))
        assert seen["model"] == "b-alias" and seen["stop"] == ["END"]
        # selectors rewrite the model to the chosen target
        seen = await upstream_saw(http, url, chat("auto"))
        assert seen["model"] == "b"
        # pin → selector → target
        seen = await upstream_saw(http, url, chat("via-selector"))
        assert seen["model"] == "b"
        # a disabled name is unknown while the profile is active
        async with http.post(url + CHAT, json=chat("off")) as response:
            await error_of(response, 404)
        # /upstream resolves the active profile's pins too (§2.8), body untouched
        raw = json.dumps(chat("whatever", temperature=3)).encode()
        async with http.post(
            url + "/upstream/bpin/v1/chat/completions",
            data=raw,
            headers={"Content-Type": "application/json"},
        ) as response:
            assert response.status == 200, await response.text()
            assert (await response.json())["request_body"].encode() == raw
        async with http.get(url + "/upstream/off/health") as response:
            await error_of(response, 404)

        async with http.put(url + "/api/profiles/active", json={"name": None}) as response:
            assert response.status == 200
        async with http.post(url + CHAT, json=chat("chatbot")) as response:
            await error_of(response, 404)


async def test_peers_get_their_model_name_api_key_and_filters() -> None:
    peer_yaml = config_yaml(
        fake_model("m", "--respond", "from-peer", "--chunks", "3"),
        top="apiKeys: [peer-secret, main-key]",
    )
    async with running_server(peer_yaml) as peer, recording_upstream() as recorder:
        closed = free_port()
        main_yaml = config_yaml(
            fake_model("local"),
            top=f"""
            apiKeys: [main-key]
            peers:
              p1:
                proxy: {peer.url}
                apiKey: peer-secret
                models: [m]
                filters:
                  stripParams: temperature
                  setParams: {{max_tokens: 9, model: nope}}
              p2:
                proxy: {peer.url}/
                models: [m]
              rec:
                proxy: {recorder.url}/base
                apiKey: rec-key
                models: [org/r]
              gone:
                proxy: http://127.0.0.1:{closed}
                models: [x]
            """,
        )
        async with running_server(main_yaml) as server, server.client() as http:
            client_auth = {"Authorization": "Bearer main-key"}
            # FQN → the peer's own model ID; the peer's apiKey replaces the client's; peer filters
            seen = await upstream_saw(
                http, server.url, chat("p1/m", temperature=1, keep=1), headers=client_auth
            )
            assert seen["model"] == "m"
            # the peer accepted its apiKey (200) and, having keys itself, kept it from its upstream
            assert seen["__authorization"] == ""
            assert "temperature" not in seen and seen["max_tokens"] == 9 and seen["keep"] == 1
            # a peer without apiKey gets no credentials (never the client's), and no filters;
            # the peer here needs a key, so the request is refused there
            async with http.post(
                server.url + CHAT, json=chat("p2/m", temperature=1), headers=client_auth
            ) as response:
                await error_of(response, 401)
            # streaming through a peer
            async with http.post(
                server.url + CHAT, json=chat("p1/m", stream=True), headers=client_auth
            ) as response:
                assert response.status == 200
                assert response.headers.get("X-Accel-Buffering") == "no"
                assert content_text(await sse_events(response)) == "from-peer" * 3
            # a client that leaves a peer stream closes the connection to the peer, which frees
            # the peer's slot long before the 5 s the answer would take
            async with watching(peer) as peer_watch:
                async with http.post(
                    server.url + CHAT + "?wait=5",
                    json=chat("p1/m", stream=True),
                    headers=client_auth,
                ) as response:
                    assert response.status == 200
                    await peer_watch.until(
                        lambda: peer.service.router.snapshot.in_flight.get("m") == 1
                    )
                    left = time.monotonic()
                    response.close()
                await peer_watch.until(lambda: not peer.service.router.snapshot.in_flight, within=4)
                assert time.monotonic() - left < 3
            # multipart to a peer: the model field is rewritten
            form = aiohttp.FormData()
            form.add_field("model", "p1/m")
            form.add_field("file", b"abc", filename="f.wav")
            async with http.post(
                server.url + "/v1/audio/transcriptions", data=form, headers=client_auth
            ) as response:
                assert response.status == 200, await response.text()
                assert (await response.json())["model"] == "m"
            # /upstream to a peer: body untouched, apiKey injected
            raw = json.dumps(chat("m", temperature=1)).encode()
            async with http.post(
                server.url + "/upstream/p1/m/v1/chat/completions",
                data=raw,
                headers={**client_auth, "Content-Type": "application/json"},
            ) as response:
                assert response.status == 200, await response.text()
                answer = await response.json()
            assert answer["request_body"].encode() == raw
            assert answer["h_authorization"] == ""  # accepted by the peer, kept there

            # on the wire (a recording peer): base path kept, raw query kept, both auth headers
            # replaced, Host is the peer's
            path = "/v1/chat/completions?a=%2F&b"
            async with http.post(
                URL(server.url + path, encoded=True),
                json=chat("rec/org/r"),
                headers={**client_auth, "x-api-key": "main-key"},
            ) as response:
                assert response.status == 200, await response.text()
            got = recorder.requests()[-1]
            assert got.raw_path == "/base" + path
            assert got.headers["Authorization"] == "Bearer rec-key"
            assert got.headers.getall("x-api-key") == ["rec-key"]
            assert got.headers["Host"] == recorder.url.removeprefix("http://")
            assert json.loads(got.body)["model"] == "org/r"
            # a bare peer model name works when only one peer lists it
            async with http.post(
                server.url + CHAT, json=chat("org/r"), headers=client_auth
            ) as response:
                assert response.status == 200
            assert json.loads(recorder.requests()[-1].body)["model"] == "org/r"

            # an unreachable peer is a 502 with an error body; an ambiguous bare name is unknown
            async with http.post(
                server.url + CHAT, json=chat("x"), headers=client_auth
            ) as response:
                await error_of(response, 502)
            async with http.post(
                server.url + CHAT, json=chat("m"), headers=client_auth
            ) as response:
                await error_of(response, 404)
            # the main server's own auth still guards peer routes
            async with http.post(server.url + CHAT, json=chat("p1/m")) as response:
                await error_of(response, 401)
