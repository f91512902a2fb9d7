"""apiKeys (§2.2): Basic (password), Bearer, x-api-key; every protected route refuses a
missing or wrong key with a 401 error body; /health, the redirects and OPTIONS stay open."""

from __future__ import annotations

import base64
import json

import aiohttp
import anyio
import pytest
from multidict import CIMultiDictProxy

from .http_helpers import CHAT, assert_error, chat
from .server import config_yaml, fake_model, running_server

pytestmark = pytest.mark.anyio

KEYS = ("sekrit", "other-key", "with:colon")

# (method, path, JSON body or None) for every protected route family
MODEL_POSTS = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/responses",
    "/v1/embeddings",
    "/v1/audio/speech",
    "/v1/audio/voices",
    "/v1/images/generations",
    "/v1/rerank",
    "/v1/reranking",
    "/rerank",
    "/reranking",
    "/infill",
    "/completion",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/sdapi/v1/txt2img",
    "/sdapi/v1/img2img",
    "/v/chat/completions",
    "/audioapi/v1/tasks/run",
)
MODEL_MULTIPART = ("/v1/audio/transcriptions", "/v1/images/edits")
MODEL_GETS = ("/props?model=a", "/v1/audio/voices?model=a", "/sdapi/v1/loras?model=a")
OPERATOR = (
    ("GET", "/v1/models"),
    ("GET", "/models"),
    ("GET", "/running"),
    ("GET", "/upstream/a/health"),
    ("POST", "/upstream/a/v1/chat/completions"),
    ("POST", "/api/models/load/a"),
    ("GET", "/logs"),
    ("GET", "/logs/stream"),
    ("GET", "/logs/stream/a"),
    ("GET", "/metrics"),
    ("GET", "/ui/"),
    ("GET", "/ui/index.html"),
    ("GET", "/comfyui/"),
    ("GET", "/api/events"),
    ("GET", "/api/profiles"),
    ("GET", "/api/version"),
    ("PUT", "/api/profiles/active"),
    # unloads last: with a valid key they stop the model
    ("GET", "/unload"),
    ("POST", "/api/models/unload/a"),
    ("POST", "/api/models/unload"),
)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def multipart() -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("model", "a")
    form.add_field("file", b"abc", filename="f.wav", content_type="audio/wav")
    form.add_field("image", b"abc", filename="i.png", content_type="image/png")
    return form


async def _call(
    http: aiohttp.ClientSession,
    url: str,
    method: str,
    path: str,
    headers: dict[str, str],
    kind: str,
) -> tuple[int, CIMultiDictProxy[str], str]:
    kwargs: dict[str, object] = {"headers": headers}
    if kind == "json":
        kwargs["json"] = {
            **chat("a"),
            "input": "x",
            "query": "q",
            "documents": ["d"],
            "prompt": "p",
            "max_tokens": 4,
        }
    elif kind == "multipart":
        kwargs["data"] = multipart()
    async with http.request(method, url + path, allow_redirects=False, **kwargs) as response:  # type: ignore[arg-type]
        # only refusals are read: some protected routes are endless streams (/api/events)
        text = await response.text() if response.status == 401 else ""
        return response.status, response.headers, text


def _routes() -> list[tuple[str, str, str]]:
    routes = [("POST", p, "json") for p in MODEL_POSTS]
    routes += [("POST", p, "multipart") for p in MODEL_MULTIPART]
    routes += [("GET", p, "none") for p in MODEL_GETS]
    routes += [(m, p, "json" if m != "GET" else "none") for m, p in OPERATOR]
    return routes


async def test_every_protected_route_refuses_missing_or_wrong_keys() -> None:
    yaml = config_yaml(fake_model("a"), top=f"apiKeys: [{', '.join(repr(k) for k in KEYS)}]")
    async with running_server(yaml) as server, server.client() as http:
        bad_credentials: list[dict[str, str]] = [
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "Bearer "},
            {"Authorization": basic("sekrit", "wrong")},  # the user part is not the key
            {"Authorization": "Basic !!!not-base64!!!"},
            {"x-api-key": "sekri"},
            {"x-api-key": "sekrit2"},
            {"Authorization": "Bearer wrong", "x-api-key": "sekrit"},  # Authorization wins
        ]
        for method, path, kind in _routes():
            for headers in bad_credentials:
                status, got, text = await _call(http, server.url, method, path, headers, kind)
                assert status == 401, (method, path, headers, status, text)
                assert got.get("WWW-Authenticate", "").startswith("Basic realm="), (path, dict(got))
                assert_error(json.loads(text), type_="authentication_error", code="unauthorized")
        # nothing was started by a refused request
        assert server.service.router.model_state("a") == "stopped"
        # the error follows Accept like every other error
        async with http.get(server.url + "/running", headers={"Accept": "text/plain"}) as response:
            assert response.status == 401
            assert response.content_type == "text/plain"
            assert "invalid or missing API key" in await response.text()


async def test_valid_keys_in_every_accepted_form_pass_on_every_route() -> None:
    yaml = config_yaml(fake_model("a"), top=f"apiKeys: [{', '.join(repr(k) for k in KEYS)}]")
    async with running_server(yaml) as server, server.client() as http:
        forms = [
            {"Authorization": "Bearer sekrit"},
            {"Authorization": "bearer other-key"},  # the scheme is case-insensitive
            {"Authorization": "BEARER sekrit"},
            {"Authorization": basic("anyone", "sekrit")},
            {"Authorization": basic("", "other-key")},
            {"Authorization": basic("user", "with:colon")},  # only the first ':' separates
            {"x-api-key": "sekrit"},
            {"X-API-KEY": "other-key"},
        ]
        for headers in forms:
            async with http.post(server.url + CHAT, json=chat("a"), headers=headers) as response:
                assert response.status == 200, (headers, await response.text())
                answer = await response.json()
            # the key was for llamaswap: it never reaches the upstream
            assert answer["h_authorization"] == ""
        for index, (method, path, kind) in enumerate(_routes()):
            headers = forms[index % len(forms)]
            status, _, _ = await _call(http, server.url, method, path, headers, kind)
            assert status != 401, (method, path, headers)


async def test_open_routes_need_no_key() -> None:
    yaml = config_yaml(fake_model("a"), top="apiKeys: [sekrit]")
    async with running_server(yaml) as server, server.client() as http:
        for path in ("/health", "/wol-health"):
            async with http.get(server.url + path) as response:
                assert response.status == 200, path
                assert await response.text() == "OK"
        browser = {"Accept": "text/html"}
        for path in ("/", "/upstream"):
            async with http.get(server.url + path, headers=browser, allow_redirects=False) as r:
                assert r.status == 302, path
        async with http.get(server.url + "/") as response:  # Ollama's client health check
            assert response.status == 200
            assert await response.text() == "Ollama is running"
        async with http.options(server.url + CHAT) as response:
            assert response.status == 204
        # POST /health is not the open route
        async with http.post(server.url + "/health") as response:
            assert response.status in (401, 405)


async def _raw_get(server_url: str, header: bytes) -> bytes:
    """A GET /running with one raw header line (bytes a normal client would not send)."""
    host, port = server_url.removeprefix("http://").rsplit(":", 1)
    request = b"GET /running HTTP/1.1\r\nHost: x\r\n" + header + b"\r\nConnection: close\r\n\r\n"
    async with await anyio.connect_tcp(host, int(port)) as stream:
        await stream.send(request)
        answer = b""
        with anyio.fail_after(10):
            try:
                while True:
                    answer += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
    return answer


async def test_keys_that_are_not_utf8_are_refused_not_crashed_on() -> None:
    yaml = config_yaml(fake_model("a"), top="apiKeys: [sekrit]")
    async with running_server(yaml) as server:
        for header in (
            b"Authorization: Bearer \xff\xfe",
            b"x-api-key: \xc3\x28",
            b"Authorization: Basic \xff",
        ):
            answer = await _raw_get(server.url, header)
            status_line, _, rest = answer.partition(b"\r\n")
            assert status_line.split()[1] == b"401", (header, answer[:300])
            body = rest.partition(b"\r\n\r\n")[2]
            assert_error(json.loads(body), type_="authentication_error")
