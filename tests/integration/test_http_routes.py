"""Every route family through real HTTP: model-routed endpoints, operator endpoints,
the /upstream passthrough, CORS, and what a proxied request looks like on the wire
(raw path and query byte for byte, hop-by-hop headers stripped both ways)."""

from __future__ import annotations

import json
import random

import aiohttp
import pytest
from multidict import CIMultiDict
from yarl import URL

from .http_helpers import (
    CHAT,
    chat,
    error_of,
    idle_model,
    log_lines_matching,
    loud_model,
    multipart_fields,
    recorded_model,
    recording_upstream,
    watching,
)
from .server import config_yaml, fake_model, running_server

pytestmark = pytest.mark.anyio


async def test_every_model_routed_family_reaches_the_upstream() -> None:
    yaml = config_yaml(fake_model("a", "--respond", "pong", extra="aliases: [al]"))
    async with running_server(yaml) as server, server.client() as http:
        url = server.url

        async def post(path: str, body: dict[str, object]) -> dict[str, object]:
            async with http.post(url + path, json=body) as response:
                text = await response.text()
                assert response.status == 200, (path, response.status, text)
                answer = json.loads(text)
                assert isinstance(answer, dict), (path, answer)
                assert answer.get("src") != "llamaswap", (path, answer)
                return answer

        answer = await post(CHAT, chat("a"))
        assert answer["choices"][0]["message"]["content"] == "pong"  # type: ignore[index]
        assert json.loads(answer["request_body"])["model"] == "a"  # type: ignore[arg-type]
        answer = await post("/v1/chat/completions", chat("al"))
        assert json.loads(answer["request_body"])["model"] == "al"  # type: ignore[arg-type]
        assert (await post("/v1/completions", {"model": "a", "prompt": "x"}))[
            "object"
        ] == "text_completion"
        assert (await post("/v1/responses", {"model": "a", "input": "x"}))["object"] == "response"
        embedded = await post("/v1/embeddings", {"model": "a", "input": "x"})
        assert embedded["data"][0]["embedding"]  # type: ignore[index]
        assert await post("/v1/audio/speech", {"model": "a", "input": "x"}) == {"message": "ok"}
        assert (await post("/v1/images/generations", {"model": "a", "prompt": "x"}))["data"]
        rerank_body = {"model": "a", "query": "q", "documents": ["d1", "d2"]}
        for path in ("/v1/rerank", "/v1/reranking", "/rerank", "/reranking"):
            assert len((await post(path, rerank_body))["results"]) == 2  # type: ignore[arg-type]
        for path in ("/infill", "/completion"):
            assert (await post(path, {"model": "a", "prompt": "x"}))["content"] == "pong"
        message = await post(
            "/v1/messages",
            {"model": "a", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
        )
        assert message["type"] == "message"
        counted = await post(
            "/v1/messages/count_tokens",
            {"model": "a", "messages": [{"role": "user", "content": "x"}]},
        )
        assert isinstance(counted["input_tokens"], int)
        for path in ("/sdapi/v1/txt2img", "/sdapi/v1/img2img"):
            assert await post(path, {"model": "a", "prompt": "x"}) == {"model": "a", "images": []}
        # versionless and /audioapi paths lose their prefix on the way upstream
        assert (await post("/v/chat/completions", chat("a")))["object"] == "chat.completion"
        assert (await post("/v/embeddings", {"model": "a", "input": "x"}))["object"] == "list"
        assert await post("/audioapi/v1/tasks/run", {"model": "a"}) == {
            "ok": True,
            "path": "/v1/tasks/run",
        }

        # GET routes: the model comes from ?model=
        async with http.get(url + "/props", params={"model": "a"}) as response:
            assert response.status == 200
            assert (await response.json())["model_alias"] == "a"
        async with http.get(url + "/v1/audio/voices", params={"model": "al"}) as response:
            assert response.status == 200
            assert await response.json() == {"voices": ["voice1"], "model": "al"}
        async with http.get(url + "/sdapi/v1/loras?model=a") as response:
            assert response.status == 200
            assert await response.json() == {"loras": []}
        # POST /v1/audio/voices is model-routed too (the fake only has GET: its 405 proves
        # the request was forwarded rather than refused by llamaswap)
        async with http.post(url + "/v1/audio/voices", json={"model": "a"}) as response:
            forwarded = await response.json()
            assert forwarded.get("src") != "llamaswap", forwarded

        # multipart: the model is a form field
        form = aiohttp.FormData()
        form.add_field("model", "a")
        form.add_field("file", b"x" * 1234, filename="a.wav", content_type="audio/wav")
        async with http.post(url + "/v1/audio/transcriptions", data=form) as response:
            assert response.status == 200, await response.text()
            transcript = await response.json()
        assert transcript["text"] == "The length of the file is 1234 bytes"
        assert transcript["model"] == "a"
        form = aiohttp.FormData()
        form.add_field("model", "al")
        form.add_field("n", "2")
        form.add_field("image", b"\x89PNG....", filename="i.png", content_type="image/png")
        async with http.post(url + "/v1/images/edits", data=form) as response:
            assert response.status == 200, await response.text()
            assert len((await response.json())["data"]) == 2


async def test_operator_endpoints_load_unload_running_health() -> None:
    yaml = config_yaml(
        loud_model("a", extra="aliases: [al]\nname: Model A\ndescription: the a model\nttl: 300"),
        idle_model("b", extra="aliases: [org/b]"),
    )
    async with running_server(yaml) as server, server.client() as http:
        url = server.url

        async def running() -> list[str]:
            async with http.get(url + "/running") as response:
                assert response.status == 200
                return [entry["model"] for entry in (await response.json())["running"]]

        async with http.get(url + "/health") as response:
            assert response.status == 200
            assert await response.text() == "OK"
        assert await running() == []

        # load without sending a request (via an alias)
        async with http.post(url + "/api/models/load/al") as response:
            assert response.status == 200, await response.text()
        async with http.get(url + "/running") as response:
            entries = (await response.json())["running"]
        assert len(entries) == 1
        entry = entries[0]
        assert entry["model"] == "a"
        assert entry["state"] == "ready"
        assert entry["ttl"] == 300
        assert entry["name"] == "Model A"
        assert entry["description"] == "the a model"
        assert entry["proxy"] == server.config.models["a"].proxy
        assert "llamaswap.testing.upstream" in entry["cmd"]
        lines = server.service.model_log("a").lines()  # type: ignore[union-attr]
        requests = [line for line in lines if line.startswith(("GET ", "POST "))]
        assert requests and all(line.startswith("GET /health") for line in requests), requests

        async with http.post(url + "/api/models/load/nope") as response:
            await error_of(response, 404)

        # loading b follows the same swap policy as a request: a is stopped (names may
        # contain a slash)
        async with http.post(url + "/api/models/load/org/b") as response:
            assert response.status == 200
        assert await running() == ["b"]
        assert server.service.router.model_state("a") == "stopped"

        # the unload endpoints return once the models are stopped
        async with http.post(url + "/api/models/unload/org/b") as response:
            assert response.status == 200
        assert await running() == []
        async with http.post(url + "/api/models/unload/nope") as response:
            await error_of(response, 404)

        async with http.post(url + "/api/models/load/b") as response:
            assert response.status == 200
        assert await running() == ["b"]
        async with http.get(url + "/unload") as response:
            assert response.status == 200
            assert await response.text() == "OK"
        assert await running() == []

        async with http.post(url + "/api/models/load/b") as response:
            assert response.status == 200
        async with http.post(url + "/api/models/unload") as response:
            assert response.status == 200
            assert await response.json() == {"msg": "ok"}
        assert await running() == []


async def test_upstream_passthrough_loads_and_ignore_paths_never_swap() -> None:
    yaml = config_yaml(
        loud_model(
            "a",
            extra="aliases: [al]\nuseModelName: renamed\nfilters:\n  setParams: {temperature: 9}",
        ),
        fake_model("b"),
    )
    async with running_server(yaml) as server, server.client() as http, watching(server) as watch:
        url = server.url
        # an ignored path on a model that is not loaded: 409, and nothing is started
        async with http.get(url + "/upstream/a/static/app.js") as response:
            await error_of(response, 409)
        async with http.get(url + "/upstream/al/favicon.ico") as response:
            await error_of(response, 409)
        assert watch.swaps_to("a") == 0 and watch.states("a") == []

        async with http.get(url + "/upstream/a", allow_redirects=False) as response:
            assert response.status == 301
            assert response.headers["Location"] == "/upstream/a/"
        async with http.post(url + "/upstream/a?x=1", allow_redirects=False) as response:
            assert response.status == 308
            assert response.headers["Location"] == "/upstream/a/?x=1"
        async with http.get(url + "/upstream/nope/health") as response:
            await error_of(response, 404)

        # a normal path loads the model
        async with http.get(url + "/upstream/a/v1/models") as response:
            assert response.status == 200
            assert (await response.json())["data"][0]["id"] == "a"
        assert watch.swaps_to("a") == 1
        # the body is forwarded untouched (no useModelName, no filters)
        raw = json.dumps(chat("al", temperature=0.5)).encode()
        async with http.post(
            url + "/upstream/al/v1/chat/completions",
            data=raw,
            headers={"Content-Type": "application/json"},
        ) as response:
            assert response.status == 200
            assert (await response.json())["request_body"].encode() == raw
        # once loaded, an ignored path is forwarded (the fake answers it itself)
        async with http.get(url + "/upstream/a/static/app.js") as response:
            body = await response.json()
            assert body.get("src") != "llamaswap", body
        # an ignored path of b (not loaded) still does not evict a
        async with http.get(url + "/upstream/b/x.json") as response:
            await error_of(response, 409)
        assert watch.state("a") == "ready" and watch.swaps_to("b") == 0
        await log_lines_matching(server, "a", "GET /static/app.js")

        # /upstream for another model swaps
        async with http.get(url + "/upstream/b/health") as response:
            assert response.status == 200
        assert watch.swaps_to("b") == 1


async def test_proxied_request_keeps_raw_path_and_strips_hop_by_hop_headers() -> None:
    async with recording_upstream() as recorder:
        yaml = config_yaml(
            recorded_model("r", recorder.url),
            recorded_model("r2", recorder.url, extra="useModelName: renamed"),
        )
        async with running_server(yaml) as server, server.client() as http:
            url = server.url
            sent_headers = {
                "Authorization": "Bearer client-token",
                "X-Keep-Me": "yes",
                "Proxy-Authorization": "Basic Zm9vOmJhcg==",
                "TE": "trailers",
                "Keep-Alive": "timeout=5",
                "Connection": "keep-alive, X-Drop-Me",
                "X-Drop-Me": "dropped",
            }
            raw_query = "/v1/chat/completions?q=%41%2F&b=c+d&e=%zz&f"
            async with http.post(
                URL(url + raw_query, encoded=True),
                json=chat("r"),
                headers=sent_headers,
            ) as response:
                assert response.status == 200, await response.text()
                got_headers = response.headers
                await response.read()
            seen = recorder.requests()[-1]
            assert seen.raw_path == raw_query
            assert seen.headers.get("X-Keep-Me") == "yes"
            assert seen.headers.get("Authorization") == "Bearer client-token"
            for hop in ("Proxy-Authorization", "TE", "Keep-Alive", "X-Drop-Me"):
                assert hop not in seen.headers, (hop, dict(seen.headers))
            assert "x-drop-me" not in seen.headers.get("Connection", "").lower()
            assert json.loads(seen.body)["model"] == "r"
            # the answer: hop-by-hop headers are not passed back to the client
            assert got_headers.get("X-Upstream-Kept") == "kept"
            for hop in ("Keep-Alive", "Proxy-Authenticate", "X-Conn-Listed", "Trailer"):
                assert hop not in got_headers, (hop, dict(got_headers))

            # versionless paths lose `/v`, the query stays byte for byte
            path = "/v/chat/completions?x=%2f%2F&y"
            async with http.post(URL(url + path, encoded=True), json=chat("r")) as response:
                assert response.status == 200
            assert recorder.requests()[-1].raw_path == "/chat/completions?x=%2f%2F&y"
            # GET routes keep their query (model included) as sent
            path = "/props?model=r&z=%7E%20"
            async with http.get(URL(url + path, encoded=True)) as response:
                assert response.status == 200
            assert recorder.requests()[-1].raw_path == path
            # /upstream keeps the escaped remainder (`%2F` stays) and the query
            path = "/upstream/r/some%2Fdir/x%20y?q=%41&b=c+d"
            async with http.get(URL(url + path, encoded=True)) as response:
                assert response.status == 200
            assert recorder.requests()[-1].raw_path == "/some%2Fdir/x%20y?q=%41&b=c+d"
            # event streams get X-Accel-Buffering: no
            async with http.get(url + "/upstream/r/sse") as response:
                assert response.status == 200
                assert response.headers.get("X-Accel-Buffering") == "no"
                assert await response.read() == b"data: one\n\n"

            # a multipart form rebuilt for useModelName: every other part arrives byte for byte
            payload = (
                bytes(random.Random(7).getrandbits(8) for _ in range(50_000)) + b"\r\n--x\r\n\r"
            )
            form = aiohttp.FormData()
            form.add_field("model", "r2")
            form.add_field("prompt", "héllo wörld ✓")
            form.add_field(
                "file", payload, filename="f.bin", content_type="application/octet-stream"
            )
            async with http.post(url + "/v1/audio/transcriptions", data=form) as response:
                assert response.status == 200
            seen = recorder.requests()[-1]
            assert seen.raw_path == "/v1/audio/transcriptions"
            assert seen.headers["Content-Length"] == str(len(seen.body))
            fields = multipart_fields(seen.headers["Content-Type"], seen.body)
            assert fields["model"] == b"renamed"
            assert fields["prompt"].decode() == "héllo wörld ✓"
            assert fields["file"] == payload

            # a header named by any Connection field line is hop-by-hop (RFC 9110 §7.6.1)
            two_lines = CIMultiDict(
                [("Connection", "keep-alive"), ("Connection", "X-Drop-Me"), ("X-Drop-Me", "1")]
            )
            async with http.post(url + CHAT, json=chat("r"), headers=two_lines) as response:
                assert response.status == 200
            assert "X-Drop-Me" not in recorder.requests()[-1].headers, dict(
                recorder.requests()[-1].headers
            )


async def test_cors_preflight_answered_before_auth_on_any_path() -> None:
    # allowedOrigins "*" is llama-swap's behaviour; the default refuses other origins
    # (tests/integration/test_http_cross_site.py)
    yaml = config_yaml(fake_model("a"), top='apiKeys: [sekrit]\nallowedOrigins: ["*"]')
    async with running_server(yaml) as server, server.client() as http:
        for path in ("/v1/chat/completions", "/running", "/no/such/path", "/upstream/a/x"):
            async with http.options(
                server.url + path,
                headers={
                    "Origin": "http://x",
                    "Access-Control-Request-Headers": "X-One, bad header, Authorization",
                },
            ) as response:
                assert response.status == 204, path
                assert response.headers["Access-Control-Allow-Origin"] == "*"
                assert (
                    response.headers["Access-Control-Allow-Methods"]
                    == "GET, POST, PUT, PATCH, DELETE, OPTIONS"
                )
                assert response.headers["Access-Control-Allow-Headers"] == "X-One, Authorization"
                assert response.headers["Access-Control-Max-Age"] == "86400"
        async with http.options(server.url + "/v1/models") as response:
            assert response.status == 204
            assert (
                response.headers["Access-Control-Allow-Headers"]
                == "Content-Type, Authorization, Accept, X-Requested-With"
            )
        # ordinary responses carry no CORS headers...
        async with http.get(server.url + "/health", headers={"Origin": "http://x"}) as response:
            assert "Access-Control-Allow-Origin" not in response.headers
        # ... except /v1/models, which echoes the Origin
        async with http.get(
            server.url + "/v1/models",
            headers={"Origin": "http://ui.example", "Authorization": "Bearer sekrit"},
        ) as response:
            assert response.status == 200
            assert response.headers["Access-Control-Allow-Origin"] == "http://ui.example"
