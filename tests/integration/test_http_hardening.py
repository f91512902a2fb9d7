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
import socket
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
import anyio
import pytest
from aiohttp import web
from yarl import URL

from llamaswap.runtime.events import RequestFinished
from llamaswap.testing.ports import free_port

from .http_helpers import (
    CHAT,
    Recorder,
    assert_error,
    chat,
    error_of,
    recorded_model,
    recording_upstream,
    watching,
)
from .server import config_yaml, fake_model, running_server

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
            assert seen.getall("X-Forwarded-For") == ["127.0.0.1"]
            # a forwarded chain gets the real peer appended (never replaced by the claim)
            claimed = {**headers, "X-Forwarded-For": "203.0.113.9"}
            async with http.post(server.url + CHAT, json=chat("r"), headers=claimed) as response:
                assert response.status == 200
            seen = local.requests()[-1].headers
            assert seen.getall("X-Forwarded-For") == ["203.0.113.9, 127.0.0.1"]
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
        # the body limit holds for the decompressed size: a small bomb is a 413
        bomb = gzip.compress(b'{"model": "r", "pad": "' + b"0" * 2_000_000 + b'"}')
        async with running_server(yaml, max_body=1_000_000) as server, server.client() as http:
            headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
            async with http.post(server.url + CHAT, data=bomb, headers=headers) as answer:
                await error_of(answer, 413)


BOUNDARY = "hardening-boundary"
FORM_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def form_part(name: str, value: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"


def tiny_parts(count: int) -> bytes:
    return b"".join(form_part(f"f{i}", b"x") for i in range(count))


@asynccontextmanager
async def roomy_recording_upstream() -> AsyncIterator[Recorder]:
    """`recording_upstream`, taking bodies of up to 64 MiB (aiohttp's default is 1 MiB)."""
    recorder = Recorder()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    recorder.url = f"http://127.0.0.1:{port}"
    try:
        yield recorder
    finally:
        await runner.cleanup()


async def health_latencies(
    http: aiohttp.ClientSession, url: str, done: anyio.Event, into: list[float]
) -> None:
    """Poll /health until `done` (and at least three times), recording each latency."""
    while not done.is_set() or len(into) < 3:
        started = time.monotonic()
        async with http.get(url + "/health") as response:
            assert response.status == 200
            await response.read()
        into.append(time.monotonic() - started)


async def test_a_form_of_20000_parts_never_stalls_the_event_loop() -> None:
    file_part = form_part("file", b"\x00RIFF" * 100, filename="a.wav")
    model_first = form_part("model", b"r") + tiny_parts(20_000) + file_part
    model_last = tiny_parts(20_000) + file_part + form_part("model", b"r")
    async with roomy_recording_upstream() as local:
        yaml = config_yaml(recorded_model("r", local.url, extra="useModelName: renamed"))
        async with running_server(yaml) as server, server.client() as http:
            for path, parts, status in (
                ("/v1/audio/transcriptions", model_first, 200),
                ("/v1/images/edits", model_last, 400),
            ):
                body = parts + f"--{BOUNDARY}--\r\n".encode()
                assert len(body) > 1_000_000
                latencies: list[float] = []
                done = anyio.Event()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(health_latencies, http, server.url, done, latencies)
                    headers = {"Content-Type": FORM_TYPE}
                    async with http.post(server.url + path, data=body, headers=headers) as answer:
                        text = await answer.text()
                    done.set()
                assert answer.status == status, (path, text)
                assert max(latencies) < 0.1, (path, sorted(latencies)[-5:])
                if status == 400:
                    assert "model" in assert_error(json.loads(text)), text
                    continue
                # forwarded byte for byte, but for the renamed model value
                seen = local.requests()[-1]
                assert seen.headers["Content-Type"] == FORM_TYPE
                assert seen.body == body.replace(b"\r\n\r\nr\r\n", b"\r\n\r\nrenamed\r\n", 1)


@dataclass
class Firehose:
    """An upstream whose chat answer is an endless event stream (64 KiB per event),
    written as fast as the proxy takes it, until the proxy hangs up."""

    url: str = ""
    hung_up: anyio.Event = field(default_factory=anyio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/health":
            return web.json_response({"status": "ok"})
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        event = b"data: " + b"x" * 65536 + b"\n\n"
        try:
            while True:
                await response.write(event)
        except (ConnectionError, RuntimeError):
            self.hung_up.set()
            raise
        finally:
            self.hung_up.set()


@asynccontextmanager
async def firehose_upstream() -> AsyncIterator[Firehose]:
    firehose = Firehose()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", firehose.handle)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    firehose.url = f"http://127.0.0.1:{port}"
    try:
        yield firehose
    finally:
        await runner.cleanup()


def never_reading_client(url: str, path: str, body: bytes) -> socket.socket:
    """A client that sends one request and then never reads a byte of the answer."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


async def test_a_client_that_stops_reading_loses_its_stream_and_frees_the_model() -> None:
    async with firehose_upstream() as firehose:
        yaml = config_yaml(
            recorded_model("r", firehose.url), fake_model("b"), top="clientWriteTimeout: 0.5"
        )
        async with running_server(yaml) as server, server.client() as http:
            async with watching(server) as watch:
                body = json.dumps(chat("r", stream=True)).encode()
                sock = never_reading_client(server.url, CHAT, body)
                try:
                    await watch.until(
                        lambda: watch.server.service.router.snapshot.in_flight == {"r": 1}
                    )
                    # the stalled stream is cut, its lease ends, and b can evict r
                    with anyio.fail_after(10):
                        async with http.post(server.url + CHAT, json=chat("b")) as response:
                            assert response.status == 200, await response.text()
                        await firehose.hung_up.wait()
                finally:
                    sock.close()
            warnings = [
                line for line in server.service.proxy_log.lines() if "stopped reading" in line
            ]
            assert len(warnings) == 1 and "WARN" in warnings[0], warnings


async def test_ignore_paths_are_matched_on_the_decoded_normalised_path() -> None:
    async with recording_upstream() as local:
        yaml = config_yaml(
            recorded_model("r", local.url),
            top=r"upstream: {ignorePaths: ['^/app\.json$', '\.js$']}",
        )
        async with (
            running_server(yaml) as server,
            server.client() as http,
            watching(server) as watch,
        ):
            dodges = (
                "/app%2ejson",
                "/app%2Ejson",
                "/%61pp.json",
                "//app.json",
                "/./app.json",
                "/%2Fapp.json",
                "/%2e/app.json",
                "/static/x%2ejs",
                "/static//./x.js",
            )
            for dodge in dodges:
                async with http.get(URL(server.url + "/upstream/r" + dodge, encoded=True)) as got:
                    await error_of(got, 409)
            assert watch.swaps_to("r") == 0 and watch.states("r") == []
            # once loaded, such a path is forwarded as the client wrote it
            async with http.get(server.url + "/upstream/r/health") as response:
                assert response.status == 200
            for dodge in dodges:
                async with http.get(URL(server.url + "/upstream/r" + dodge, encoded=True)) as got:
                    assert got.status == 200, (dodge, await got.text())
                assert local.requests()[-1].raw_path == dodge


async def test_json_without_a_json_content_type_is_read_as_json() -> None:
    body = json.dumps(chat("r", temperature=0.5)).encode()
    async with recording_upstream() as local:
        yaml = config_yaml(recorded_model("r", local.url, extra="useModelName: renamed"))
        async with running_server(yaml) as server, server.client() as http:

            async def post(path: str, data: bytes, content_type: str | None) -> tuple[int, str]:
                headers = {"Content-Type": content_type} if content_type else {}
                skip = () if content_type else ("Content-Type",)
                async with http.post(
                    server.url + path, data=data, headers=headers, skip_auto_headers=skip
                ) as response:
                    return response.status, await response.text()

            # what `curl -d` sends, no Content-Type at all, text/plain: all JSON to llamaswap
            for content_type in ("application/x-www-form-urlencoded", None, "text/plain"):
                status, text = await post(CHAT, b"  \n" + body, content_type)
                assert status == 200, (content_type, text)
                seen = local.requests()[-1]
                # relabelled for the upstream, and treated as JSON (useModelName applied)
                assert seen.headers["Content-Type"] == "application/json", content_type
                assert json.loads(seen.body) == {**chat("renamed"), "temperature": 0.5}
            # a real form still works
            status, text = await post(CHAT, b"model=r&stream=false", None)
            assert status == 200, text
            assert local.requests()[-1].body == b"model=r&stream=false"
            # unusable bodies say what was expected: no model found is llama-swap's 404
            for path, data, content_type, needle, expected in (
                (CHAT, b"", None, "request body is empty", 404),
                (CHAT, b"{not json", "text/plain", "not valid JSON", 400),
                (CHAT, b"hello", None, "neither a JSON object nor a form", 404),
                (CHAT, b"hello", "text/plain", "Content-Type is text/plain", 404),
                ("/v1/audio/transcriptions", body, None, "expects multipart/form-data", 404),
            ):
                status, text = await post(path, data, content_type)
                assert status == expected, (data, content_type, text)
                assert needle in assert_error(json.loads(text)), (data, text)


async def test_requests_the_client_abandoned_are_499_in_the_metrics() -> None:
    yaml = config_yaml(fake_model("a", "--chunks", "100", "--chunk-gap", "0.1"))
    async with running_server(yaml) as server, server.client() as http, watching(server) as watch:
        router = server.service.router
        # one leaves before any answer, one in the middle of its stream
        async with anyio.create_task_group() as tg:

            async def leaves_early() -> None:
                async with http.post(server.url + CHAT + "?wait=5", json=chat("a")) as response:
                    await response.read()

            tg.start_soon(leaves_early)
            await watch.until(lambda: router.snapshot.in_flight == {"a": 1})
            tg.cancel_scope.cancel()
        await watch.until(lambda: not router.snapshot.in_flight)
        async with http.post(server.url + CHAT, json=chat("a", stream=True)) as streaming:
            assert streaming.status == 200
            await streaming.content.readline()
            streaming.close()
        await watch.until(lambda: not router.snapshot.in_flight)
        await watch.until(lambda: sum(isinstance(e, RequestFinished) for e in watch.events) == 2)
        async with http.get(server.url + "/metrics") as response:
            text = await response.text()
        assert 'llamaswap_requests_total{model="a",status="499"} 2.0' in text, text
        assert 'status="0"' not in text and 'status="200"' not in text, text
        # as in the access log
        logged = [line for line in server.service.proxy_log.lines() if "POST /v1/chat" in line]
        assert len(logged) == 2 and all('" 499 ' in line for line in logged), logged
