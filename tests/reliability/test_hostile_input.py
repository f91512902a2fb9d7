"""Hostile input against a live server while it serves real work (issue 13): a request
line too long, too many headers, a slowloris (hundreds of half-sent request heads), a
cross-site form POST, a multipart body whose model comes after 20,000 parts, a gzip bomb
(larger than the body limit once inflated) and garbage bodies, all at once, while
/health is polled and good chat requests stream through a fake upstream.

The server must stay responsive (every /health answer under 100 ms), lose no good
request, answer each hostile input with a clear 4xx of its own (or close a slow head
with a 408), and never start the model the hostile requests name. Not slow: runs in
`make test` in a few seconds.

Request bytes go over raw sockets (test_bad_input.py's helpers): no client library
sends most of them.
"""

from __future__ import annotations

import gzip
import json
import random
import selectors
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import anyio
import pytest

from llamaswap.runtime.events import ProcessStateChanged

from ..integration.http_helpers import CHAT, chat
from ..integration.server import RunningServer, config_yaml, fake_model, running_server
from .conftest import OK, RawResponse, classify, error_envelope, raw_exchange, raw_request

pytestmark = pytest.mark.anyio

VICTIM = "victim"  # the model every hostile request names: it must never start
HEALTH_LIMIT = 0.100  # seconds, for every /health answer
HEADER_TIMEOUT = 1.0  # requestHeaderTimeout of the server under test
SLOWLORIS = 300  # half-sent request heads held open at once
GOOD_WORKERS = 4
ANSWER_WITHIN = 3.0  # seconds for llamaswap's answer to a hostile request
MULTIPART_PARTS = 20_000
JSON = b"Content-Type: application/json"
CHAT_PATH = CHAT.encode()


def _multipart() -> tuple[bytes, bytes]:
    """20,000 tiny parts before the model: past the part bound, so never routed."""
    parts = [
        b'--B\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nx\r\n' % i
        for i in range(MULTIPART_PARTS)
    ]
    parts.append(b'--B\r\nContent-Disposition: form-data; name="model"\r\n\r\nvictim\r\n')
    parts.append(
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\nRIFF\r\n--B--\r\n"
    )
    return b"Content-Type: multipart/form-data; boundary=B", b"".join(parts)


def _requests() -> dict[str, bytes]:
    """Every hostile request that gets one answer, built before the clock starts."""
    victim_chat = json.dumps(chat(VICTIM)).encode()
    form_type, form = _multipart()
    garbage = random.Random(13).randbytes(64 * 1024)
    return {
        "request-line-too-long": raw_request("GET", b"/v1/models?" + b"q" * 100_000),
        "too-many-headers": raw_request(
            "GET", b"/health", None, tuple(b"X-H%d: v" % i for i in range(5000))
        ),
        "cross-site-form-post": raw_request(
            "POST",
            CHAT_PATH,
            b"model=victim&messages=hi",
            (
                b"Content-Type: application/x-www-form-urlencoded",
                b"Origin: http://evil.example",
                b"Sec-Fetch-Site: cross-site",
                b"Sec-Fetch-Mode: navigate",
            ),
        ),
        "multipart-20000-parts": raw_request(
            "POST", b"/v1/audio/transcriptions", form, (form_type,)
        ),
        "gzip-bomb": raw_request(
            "POST",
            CHAT_PATH,
            gzip.compress(victim_chat[:-1] + b', "pad": "' + b"a" * (80 * 1024 * 1024) + b'"}'),
            (JSON, b"Content-Encoding: gzip"),
        ),
        "garbage-json-body": raw_request("POST", CHAT_PATH, garbage, (JSON,)),
        "yaml-body": raw_request(
            "POST", CHAT_PATH, b"model: victim\nmessages: []\n", (b"Content-Type: text/yaml",)
        ),
    }


@dataclass
class Run:
    server: RunningServer
    problems: dict[str, str] = field(default_factory=dict)


def _problem(response: RawResponse) -> str | None:
    """Why this is not llamaswap's own clear 4xx (None: it is)."""
    if not 400 <= response.status < 500:
        return f"status {response.status}: {response.body[:200]!r}"
    try:
        document = json.loads(response.body)
    except ValueError:
        return f"not JSON: {response.body[:200]!r}"
    if error_envelope(document) is None or document.get("src") != "llamaswap":
        return f"not llamaswap's OpenAI-shaped error: {response.body[:200]!r}"
    return None


async def _one(run: Run, name: str, data: bytes) -> None:
    try:
        response = await raw_exchange(run.server.url, data, within=ANSWER_WITHIN)
    except TimeoutError:
        run.problems[name] = f"no answer within {ANSWER_WITHIN} s"
        return
    problem = _problem(response)
    if problem:
        run.problems[name] = problem


async def _slowloris(run: Run) -> None:
    """Half a request line on each of SLOWLORIS connections: each must be closed with a
    408 once requestHeaderTimeout has passed. The attacker runs in a thread with
    blocking sockets: its own work must not count against the server's event loop."""
    host, port = run.server.url.removeprefix("http://").split(":")
    answers = await anyio.to_thread.run_sync(_hold_heads, host, int(port), HEADER_TIMEOUT + 5)
    wrong = [answer[:60] for answer in answers if not answer.startswith(b"HTTP/1.1 408")]
    if wrong:
        run.problems["slowloris"] = f"{len(wrong)} of {SLOWLORIS} not closed by a 408: {wrong[:3]}"


def _hold_heads(host: str, port: int, within: float) -> list[bytes]:
    """Open SLOWLORIS connections, send half a request line on each, and collect what
    each gets until the server closes it (b"still open" for any left after `within`)."""
    received: dict[socket.socket, bytes] = {}
    with selectors.DefaultSelector() as selector:
        for _ in range(SLOWLORIS):
            conn = socket.create_connection((host, port))
            conn.sendall(b"POST /v1/chat/completions HT")
            conn.setblocking(False)
            selector.register(conn, selectors.EVENT_READ)
            received[conn] = b""
        deadline = time.monotonic() + within
        while selector.get_map() and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=deadline - time.monotonic()):
                conn = key.fileobj
                assert isinstance(conn, socket.socket)
                try:
                    data = conn.recv(65536)
                except ConnectionResetError:
                    data = b""
                if data:
                    received[conn] += data
                else:
                    selector.unregister(conn)
                    conn.close()
        for key in list(selector.get_map().values()):
            assert isinstance(key.fileobj, socket.socket)
            received[key.fileobj] = b"still open"
            key.fileobj.close()
    return list(received.values())


@dataclass
class Health:
    """Polls /health on one keep-alive connection until stopped; records every latency."""

    url: str
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: anyio.Event = field(default_factory=anyio.Event)

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector, trust_env=False) as http:
            while not self.stop.is_set():
                started = time.monotonic()
                async with http.get(self.url + "/health") as response:
                    body = await response.read()
                self.latencies.append(time.monotonic() - started)
                if (response.status, body) != (200, b"OK"):
                    self.failures.append(f"{response.status} {body[:100]!r}")
                await anyio.sleep(0.01)  # pacing, not synchronisation


@dataclass
class Good:
    """Chat requests to the healthy model, plain and streamed, until stopped."""

    url: str
    sent: int = 0
    bad: list[str] = field(default_factory=list)
    stop: anyio.Event = field(default_factory=anyio.Event)

    async def run(self) -> None:
        async with aiohttp.ClientSession(trust_env=False) as http, anyio.create_task_group() as tg:
            for worker in range(GOOD_WORKERS):
                tg.start_soon(self._worker, http, worker % 2 == 1)

    async def _worker(self, http: aiohttp.ClientSession, stream: bool) -> None:
        while not self.stop.is_set():
            rid = self.sent
            self.sent += 1
            try:
                async with http.post(self.url + CHAT, json=chat("ok", stream=stream)) as response:
                    data = await response.read()
                    outcome = classify(
                        rid, "ok", response.status, response.content_type, data, stream
                    )
            except (aiohttp.ClientError, OSError) as exc:
                self.bad.append(f"{rid}: {exc!r}")
                continue
            if outcome.kind != OK:
                self.bad.append(f"{rid}: {outcome}")


def _starts_of(server: RunningServer, model: str) -> tuple[list[str], Callable[[], None]]:
    states: list[str] = []

    def on_event(event: object) -> None:
        if isinstance(event, ProcessStateChanged) and event.model == model:
            states.append(event.new)

    server.service.bus.add_listener(on_event)
    return states, lambda: server.service.bus.remove_listener(on_event)


MULTIPART = "multipart-20000-parts"
ALL = [
    "request-line-too-long",
    "too-many-headers",
    "slowloris",
    "cross-site-form-post",
    MULTIPART,
    "gzip-bomb",
    "garbage-json-body",
    "yaml-body",
]


@pytest.mark.parametrize(
    "names",
    [
        pytest.param([n for n in ALL if n != MULTIPART], id="malformed-set"),
        pytest.param([MULTIPART], id=MULTIPART),
    ],
)
async def test_hostile_input_neither_slows_nor_breaks_good_work(names: list[str]) -> None:
    requests = _requests()
    yaml = config_yaml(
        fake_model("ok"), fake_model(VICTIM), top=f"requestHeaderTimeout: {HEADER_TIMEOUT}"
    )
    async with running_server(yaml) as server:
        async with server.client() as http, http.post(server.url + CHAT, json=chat("ok")) as r:
            assert r.status == 200  # the good model is up before the clock starts
        victim_states, unlisten = _starts_of(server, VICTIM)
        run = Run(server)
        health, good = Health(server.url), Good(server.url)
        attacks: list[Awaitable[None]] = [
            _slowloris(run) if name == "slowloris" else _one(run, name, requests[name])
            for name in names
        ]
        try:
            async with anyio.create_task_group() as probes:
                probes.start_soon(health.run)
                probes.start_soon(good.run)
                async with anyio.create_task_group() as tg:
                    for attack in attacks:
                        tg.start_soon(_await, attack)
                health.stop.set()
                good.stop.set()
        finally:
            unlisten()

        assert not run.problems, "\n".join(f"{k}: {v}" for k, v in run.problems.items())
        assert not victim_states, f"a hostile request started {VICTIM}: {victim_states}"
        assert not health.failures, health.failures[:5]
        worst = max(health.latencies)
        polls, slow = len(health.latencies), sum(x > HEALTH_LIMIT for x in health.latencies)
        assert worst < HEALTH_LIMIT, (
            f"/health took {worst * 1000:.0f} ms at worst ({polls} polls, {slow} slow)"
        )
        assert good.sent >= GOOD_WORKERS and not good.bad, good.bad[:5]


async def _await(attack: Awaitable[None]) -> None:
    await attack
