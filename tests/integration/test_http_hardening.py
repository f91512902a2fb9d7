"""Issue 13, part A: what the proxy forwards and how it survives hostile clients.

Credentials for llamaswap stay in llamaswap; gzip bodies arrive consistent; a huge
multipart form cannot stall the event loop; a client that stops reading cannot hold
its model; `ignorePaths` cannot be dodged by encoding; JSON without a JSON
Content-Type is still routed; aborted requests are 499 in the metrics.
"""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from collections.abc import Iterator

import pytest

from .http_helpers import CHAT, Recorder, chat, recorded_model, recording_upstream
from .server import config_yaml, running_server

pytestmark = pytest.mark.anyio

KEY = "llamaswap-key"
CREDENTIALS = ("Authorization", "x-api-key")


def basic(password: str) -> str:
    return "Basic " + base64.b64encode(f"user:{password}".encode()).decode()


def client_credentials() -> Iterator[dict[str, str]]:
    """Every form a client may present llamaswap's key in."""
    yield {"Authorization": f"Bearer {KEY}"}
    yield {"Authorization": basic(KEY)}
    yield {"x-api-key": KEY}
    yield {"Authorization": f"Bearer {KEY}", "x-api-key": "meant-for-someone-else"}


def assert_no_credentials(recorder: Recorder, what: str) -> None:
    seen = recorder.requests()[-1]
    for name in CREDENTIALS:
        assert name not in seen.headers, (what, name, dict(seen.headers))


async def test_llamaswap_keys_reach_no_upstream_and_no_peer() -> None:
    async with (
        recording_upstream() as local,
        recording_upstream() as open_peer,
        recording_upstream() as keyed_peer,
    ):
        yaml = config_yaml(
            recorded_model("r", local.url),
            top=f"""
            apiKeys: [{KEY}]
            peers:
              open:
                proxy: {open_peer.url}
                models: [m]
              keyed:
                proxy: {keyed_peer.url}
                apiKey: peer-key
                models: [k]
            """,
        )
        async with running_server(yaml) as server, server.client() as http:
            for headers in client_credentials():
                for path, recorder, model in (
                    (CHAT, local, "r"),
                    ("/upstream/r/v1/chat/completions", local, "r"),
                    (CHAT, open_peer, "open/m"),
                    ("/upstream/open/m/v1/chat/completions", open_peer, "open/m"),
                ):
                    async with http.post(
                        server.url + path, json=chat(model), headers=headers
                    ) as response:
                        assert response.status == 200, (path, await response.text())
                    assert_no_credentials(recorder, f"{path} {model} {headers}")
                # a peer with its own apiKey gets that key and nothing of the client's
                for path in (CHAT, "/upstream/keyed/k/v1/chat/completions"):
                    async with http.post(
                        server.url + path, json=chat("keyed/k"), headers=headers
                    ) as response:
                        assert response.status == 200, (path, await response.text())
                    seen = keyed_peer.requests()[-1].headers
                    assert seen.getall("Authorization") == ["Bearer peer-key"], dict(seen)
                    assert seen.getall("x-api-key") == ["peer-key"], dict(seen)


async def test_without_api_keys_credentials_reach_local_upstreams_but_never_peers() -> None:
    async with recording_upstream() as local, recording_upstream() as open_peer:
        yaml = config_yaml(
            recorded_model("r", local.url),
            top=f"""
            peers:
              open:
                proxy: {open_peer.url}
                models: [m]
            """,
        )
        async with running_server(yaml) as server, server.client() as http:
            headers = {"Authorization": "Bearer upstream-token", "x-api-key": "upstream-key"}
            async with http.post(server.url + CHAT, json=chat("r"), headers=headers) as response:
                assert response.status == 200
            seen = local.requests()[-1].headers
            assert seen["Authorization"] == "Bearer upstream-token"
            assert seen["x-api-key"] == "upstream-key"
            async with http.post(
                server.url + CHAT, json=chat("open/m"), headers=headers
            ) as response:
                assert response.status == 200
            assert_no_credentials(open_peer, "peer without apiKey")


async def test_compressed_request_bodies_arrive_decoded_and_labelled_so() -> None:
    raw = json.dumps(chat("r", temperature=0.5)).encode()
    encodings = {"gzip": gzip.compress(raw), "deflate": zlib.compress(raw)}
    async with recording_upstream() as local:
        yaml = config_yaml(recorded_model("r", local.url))
        async with running_server(yaml) as server, server.client() as http:
            for path in (CHAT, "/upstream/r/v1/chat/completions"):
                for encoding, packed in encodings.items():
                    headers = {"Content-Encoding": encoding, "Content-Type": "application/json"}
                    async with http.post(server.url + path, data=packed, headers=headers) as answer:
                        assert answer.status == 200, (path, encoding, await answer.text())
                    seen = local.requests()[-1]
                    assert "Content-Encoding" not in seen.headers, (path, dict(seen.headers))
                    assert seen.body == raw, (path, encoding)
                    assert seen.headers["Content-Length"] == str(len(raw))
