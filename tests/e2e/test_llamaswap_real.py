"""llamaswap in front of real llama.cpp ``llama-server`` processes (``make e2e``).

Three tiny models (m1, m2, m3: different seeds, training contexts and ``-c``), each
served by its own llama-server with ``--threads 1``. llamaswap runs in this process
(``tests/integration/server.py``) except for the shutdown tests, which run
``llamaswap run`` as a subprocess and signal it. Every llama-server of ours is found
through ``/proc`` by its model path; ``no_leftovers`` kills stragglers and fails a
test that left one behind. Everything listens on 127.0.0.1 on free ports.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import httpx2
import openai
import pytest

from llamaswap.runtime.events import ProcessStateChanged
from tests.integration.http_helpers import watching
from tests.integration.server import running_server

from . import kit
from .conftest import (
    TinyModels,
    llama_model,
    llamaswap_yaml,
    our_servers,
    parent_of,
    wait_gone,
    wait_gone_sync,
)

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_leftovers")]

MODEL_IDS = ("m1", "m2", "m3")
PAIR = {"groups": {"pair": {"swap": False, "exclusive": True, "members": ["m1", "m2"]}}}
UNLOAD_TIMEOUT = 1  # seconds: llama-server ignores SIGTERM while busy, SIGKILL after this
ENDLESS = {"max_tokens": 100_000, "ignore_eos": True, "stream": True}


def chat_body(model: str, text: str, max_tokens: int = 8, **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
        "cache_prompt": False,
        **extra,
    }


async def chat(http: aiohttp.ClientSession, url: str, model: str, text: str) -> dict[str, Any]:
    async with http.post(url + "/v1/chat/completions", json=chat_body(model, text)) as response:
        reply = await response.text()
        assert response.status == 200, reply
    document: dict[str, Any] = json.loads(reply)
    return document


async def running(http: aiohttp.ClientSession, url: str) -> dict[str, str]:
    """`/running` as {model: state}."""
    async with http.get(url + "/running") as response:
        assert response.status == 200
        listing = await response.json()
    return {entry["model"]: entry["state"] for entry in listing["running"]}


def served(models: TinyModels) -> list[str]:
    """The model ids of our live llama-server processes, sorted."""
    return sorted(our_servers(models.directory).values())


async def next_event(response: aiohttp.ClientResponse) -> str | None:
    """The next SSE `data:` payload, or None at the end of the stream."""
    while True:
        raw = await response.content.readline()
        if not raw:
            return None
        line = raw.decode().strip()
        if line.startswith("data: "):
            return line.removeprefix("data: ")


async def read_chunks(response: aiohttp.ClientResponse, count: int) -> None:
    """Read `count` content chunks of a stream that must still be running."""
    seen = 0
    with anyio.fail_after(30):
        while seen < count:
            data = await next_event(response)
            assert data not in (None, "[DONE]"), "the endless stream ended early"
            assert data is not None
            if json.loads(data).get("choices"):
                seen += 1


async def read_to_end(response: aiohttp.ClientResponse) -> tuple[list[str], bool]:
    """The remaining `data:` payloads, and whether the connection broke off instead
    of ending cleanly."""
    payloads: list[str] = []
    try:
        while (data := await next_event(response)) is not None:
            payloads.append(data)
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
        return payloads, True
    return payloads, False


def assert_stream_ended_by_llamaswap(payloads: list[str], broke_off: bool) -> None:
    """Either an SSE error event (then [DONE]) or a cut connection; never a clean end
    that looks like a complete answer."""
    errors = [p for p in payloads if p != "[DONE]" and "error" in json.loads(p)]
    assert errors or broke_off, f"stream ended without an error: {payloads[-3:]}"
    if errors:
        assert payloads[-1] == "[DONE]", payloads[-3:]
        assert errors[-1] == payloads[-2], "the error must be the last event"


# --- swapping -----------------------------------------------------------------------------


async def test_default_policy_runs_one_model_at_a_time(
    binary: Path, tiny_models: TinyModels
) -> None:
    models = tiny_models
    yaml_text = llamaswap_yaml(binary, [llama_model(models, m) for m in MODEL_IDS])
    async with running_server(yaml_text) as server, server.client() as http:
        assert served(models) == [] and await running(http, server.url) == {}
        previous: int | None = None
        for turn, model in enumerate(("m1", "m2", "m3", "m1")):
            reply = await chat(http, server.url, model, f"turn {turn}: say something")
            assert reply["model"] == model  # --alias: the right llama-server answered
            assert reply["choices"][0]["message"]["content"]
            assert await running(http, server.url) == {model: "ready"}
            servers = our_servers(models.directory)
            assert list(servers.values()) == [model], servers  # the previous one is gone
            (pid,) = servers
            assert pid != previous and parent_of(parent_of(pid)) == os.getpid()  # via its keeper
            previous = pid
            # each model runs with its own command line: -c and the file
            async with http.get(f"{server.url}/upstream/{model}/props") as response:
                props = await response.json()
            assert props["default_generation_settings"]["n_ctx"] == models.ctx(model)
            assert Path(props["model_path"]) == models.paths[model]
    assert served(models) == []


async def test_group_keeps_two_together_and_the_third_evicts_them(
    binary: Path, tiny_models: TinyModels
) -> None:
    models = tiny_models
    yaml_text = llamaswap_yaml(binary, [llama_model(models, m) for m in MODEL_IDS], PAIR)
    async with running_server(yaml_text) as server, server.client() as http:
        await chat(http, server.url, "m1", "first of the pair")
        await chat(http, server.url, "m2", "second of the pair")
        assert await running(http, server.url) == {"m1": "ready", "m2": "ready"}
        pair = our_servers(models.directory)
        assert sorted(pair.values()) == ["m1", "m2"]
        await chat(http, server.url, "m1", "the pair stays")
        assert our_servers(models.directory) == pair  # no swap inside the group

        await chat(http, server.url, "m3", "the third one")
        assert await running(http, server.url) == {"m3": "ready"}
        assert served(models) == ["m3"]
        assert all(pid not in our_servers(models.directory) for pid in pair)

        await chat(http, server.url, "m2", "back to the pair")
        assert await running(http, server.url) == {"m2": "ready"}
        assert served(models) == ["m2"]
    assert served(models) == []


# --- clients and listings -------------------------------------------------------------------


@asynccontextmanager
async def openai_client(url: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with httpx2.AsyncClient(trust_env=False, timeout=30) as http:
        yield openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0, http_client=http)


async def test_openai_sdk_streams_through_llamaswap(binary: Path, tiny_models: TinyModels) -> None:
    models = tiny_models
    yaml_text = llamaswap_yaml(binary, [llama_model(models, m) for m in MODEL_IDS])
    async with running_server(yaml_text) as server, openai_client(server.url) as client:
        for model in ("m2", "m3"):  # the second one swaps
            stream = await client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": f"stream from {model}"}],
                stream=True,
                max_tokens=16,
                stream_options={"include_usage": True},
                extra_body={"cache_prompt": False},
            )
            chunks = [chunk async for chunk in stream]
            assert len(chunks) > 2
            assert {chunk.model for chunk in chunks} == {model}
            text = "".join(c.delta.content or "" for chunk in chunks for c in chunk.choices)
            assert text.strip()
            finishes = [c.finish_reason for chunk in chunks for c in chunk.choices]
            assert finishes[-1] in ("length", "stop")
            assert all(reason is None for reason in finishes[:-1])
            usage = [chunk.usage for chunk in chunks if chunk.usage is not None]
            assert usage and 0 < usage[-1].completion_tokens <= 16
            assert served(models) == [model]

        listed = await client.models.list()
        assert sorted(model.id for model in listed.data) == list(MODEL_IDS)


async def test_v1_models_lists_the_three_with_status(binary: Path, tiny_models: TinyModels) -> None:
    models = tiny_models
    yaml_text = llamaswap_yaml(binary, [llama_model(models, m) for m in MODEL_IDS])
    async with running_server(yaml_text) as server, server.client() as http:

        async def statuses() -> dict[str, str]:
            async with http.get(server.url + "/v1/models") as response:
                assert response.status == 200
                listing = await response.json()
            assert listing["object"] == "list"
            assert all(record["object"] == "model" for record in listing["data"])
            return {record["id"]: record["status"]["value"] for record in listing["data"]}

        assert await statuses() == dict.fromkeys(MODEL_IDS, "unloaded")
        await chat(http, server.url, "m2", "load me")
        assert await statuses() == {"m1": "unloaded", "m2": "loaded", "m3": "unloaded"}
        await chat(http, server.url, "m3", "now me")
        assert await statuses() == {"m1": "unloaded", "m2": "unloaded", "m3": "loaded"}


# --- unloading ----------------------------------------------------------------------------


async def test_ttl_unloads_an_idle_model(binary: Path, tiny_models: TinyModels) -> None:
    models = tiny_models
    yaml_text = llamaswap_yaml(
        binary, [llama_model(models, "m1", ttl=1), llama_model(models, "m2")]
    )
    async with (
        running_server(yaml_text) as server,
        server.client() as http,
        watching(server) as watch,
    ):
        await chat(http, server.url, "m1", "then go idle")
        answered = time.monotonic()
        (pid,) = our_servers(models.directory)
        assert await running(http, server.url) == {"m1": "ready"}

        await watch.until(lambda: watch.states("m1")[-1:] == ["stopped"], within=10)
        idle = time.monotonic() - answered
        assert 0.9 <= idle <= 4.0, f"ttl 1 s, unloaded after {idle:.2f} s"
        assert watch.states("m1") == ["launching", "starting", "ready", "stopping", "stopped"]
        await wait_gone([pid], within=1)  # already reaped when "stopped" is announced
        assert served(models) == []
        assert await running(http, server.url) == {}

        # m2 has no ttl: it stays
        await chat(http, server.url, "m2", "no ttl here")
        with anyio.move_on_after(1.5):
            await watch.until(lambda: "stopping" in watch.states("m2"), within=1.5)
        assert watch.states("m2") == ["launching", "starting", "ready"]
        assert served(models) == ["m2"]


async def test_unload_api_stops_the_processes(binary: Path, tiny_models: TinyModels) -> None:
    models = tiny_models
    yaml_text = llamaswap_yaml(binary, [llama_model(models, m) for m in MODEL_IDS], PAIR)
    async with running_server(yaml_text) as server, server.client() as http:
        for model in ("m1", "m2"):
            async with http.post(f"{server.url}/api/models/load/{model}") as response:
                assert response.status == 200, await response.text()
        pids = {model: pid for pid, model in our_servers(models.directory).items()}
        assert sorted(pids) == ["m1", "m2"]

        async with http.post(server.url + "/api/models/unload/m1") as response:
            assert response.status == 200, await response.text()
        # the answer comes once m1 is stopped: its process is gone already
        assert our_servers(models.directory) == {pids["m2"]: "m2"}
        assert await running(http, server.url) == {"m2": "ready"}

        async with http.post(server.url + "/api/models/unload/nope") as response:
            assert response.status == 404

        await chat(http, server.url, "m1", "back again")
        assert served(models) == ["m1", "m2"]
        async with http.get(server.url + "/unload") as response:
            assert response.status == 200
            assert await response.text() == "OK"
        assert served(models) == []
        assert await running(http, server.url) == {}


async def until_busy(http: aiohttp.ClientSession, upstream: str) -> None:
    """Wait until llama-server reports a slot at work (a bounded poll of its /slots)."""
    with anyio.fail_after(10):
        while True:
            try:
                async with http.get(upstream + "/slots") as response:
                    slots = await response.json() if response.status == 200 else []
            except aiohttp.ClientConnectionError:
                slots = []  # not started yet
            if any(slot["is_processing"] for slot in slots):
                return
            await anyio.sleep(0.01)


@pytest.mark.parametrize("streaming", [True, False], ids=["stream", "plain"])
async def test_unload_ends_an_inflight_request(
    binary: Path, tiny_models: TinyModels, streaming: bool
) -> None:
    """A request runs (for ~40 s) when its model is unloaded. llama-server would not
    end it on SIGTERM, so llamaswap must end the client's request itself (an SSE error
    event, or a 503 when no header was sent yet), promptly, and the process must go."""
    models = tiny_models
    endless = llama_model(models, "m1", "--context-shift", unloadTimeout=UNLOAD_TIMEOUT)
    yaml_text = llamaswap_yaml(binary, [endless])
    body = chat_body("m1", "tell me everything", **{**ENDLESS, "stream": streaming})
    outcome: dict[str, Any] = {}
    streamed = anyio.Event()
    async with running_server(yaml_text) as server, server.client() as http:

        async def client() -> None:
            async with http.post(server.url + "/v1/chat/completions", json=body) as response:
                outcome["status"] = response.status
                if streaming:
                    await read_chunks(response, 20)
                    streamed.set()
                    outcome["payloads"], outcome["broke_off"] = await read_to_end(response)
                else:
                    outcome["body"] = await response.json()
            outcome["ended"] = time.monotonic()

        async with anyio.create_task_group() as tg:
            tg.start_soon(client)
            if streaming:
                await streamed.wait()
            else:  # no header before the answer is complete: ask llama-server
                await until_busy(http, server.config.models["m1"].proxy)
            (pid,) = our_servers(models.directory)
            started = time.monotonic()
            with anyio.fail_after(UNLOAD_TIMEOUT + 2):
                async with http.post(server.url + "/api/models/unload/m1") as response:
                    assert response.status == 200
                unloaded = time.monotonic() - started
        assert outcome["ended"] - started <= UNLOAD_TIMEOUT + 2
        assert unloaded <= UNLOAD_TIMEOUT + 2
        if streaming:
            assert outcome["status"] == 200
            assert_stream_ended_by_llamaswap(outcome["payloads"], outcome["broke_off"])
        else:
            assert outcome["status"] == 503, outcome
            assert "cut short" in outcome["body"]["error"]["message"], outcome
        assert pid not in our_servers(models.directory)
        assert served(models) == []
        assert await running(http, server.url) == {}


async def test_unload_of_a_busy_llama_server_returns_once_it_is_gone(
    binary: Path, tiny_models: TinyModels
) -> None:
    """A client llamaswap does not know keeps llama-server busy. llama-server sometimes
    finishes at SIGTERM and sometimes ignores it while it streams; either way the unload
    answers only once the process is gone, and a SIGTERM that did nothing is followed by
    SIGKILL after unloadTimeout. (The escalation itself is tested deterministically with
    fake upstreams in tests/integration/test_process_actor.py.)"""
    models = tiny_models
    endless = llama_model(models, "m1", "--context-shift", unloadTimeout=UNLOAD_TIMEOUT)
    yaml_text = llamaswap_yaml(binary, [endless])
    async with (
        running_server(yaml_text) as server,
        server.client() as http,
        watching(server) as watch,
    ):
        async with http.post(server.url + "/api/models/load/m1") as response:
            assert response.status == 200
        (pid,) = our_servers(models.directory)
        upstream = server.config.models["m1"].proxy
        direct = chat_body("m1", "talk to me directly", **ENDLESS)
        async with http.post(upstream + "/v1/chat/completions", json=direct) as stream:
            await read_chunks(stream, 5)
            started = time.monotonic()
            with anyio.fail_after(UNLOAD_TIMEOUT + 2):
                async with http.post(server.url + "/api/models/unload/m1") as response:
                    assert response.status == 200
            took = time.monotonic() - started
            assert pid not in our_servers(models.directory)  # gone when the unload answers
            with anyio.fail_after(5):
                _, broke_off = await read_to_end(stream)
        assert broke_off  # ended mid-answer: no [DONE]
        stopped = [
            e for e in watch.events if isinstance(e, ProcessStateChanged) and e.new == "stopped"
        ]
        assert len(stopped) == 1, stopped
        if stopped[0].reason == f"exited with code {-signal.SIGKILL}":
            assert UNLOAD_TIMEOUT - 0.05 <= took <= UNLOAD_TIMEOUT + 2, took
        else:  # it heeded SIGTERM
            assert stopped[0].reason == "exited with code 0", stopped[0].reason
            assert took < UNLOAD_TIMEOUT, took
        assert served(models) == []


# --- shutdown of a llamaswap subprocess ---------------------------------------------------


@contextmanager
def llamaswap_process(
    config_text: str, directory: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`llamaswap run` on a free port; yields (process, base URL) once /health is 200."""
    config = directory / "config.yaml"
    config.write_text(config_text)
    port = kit.free_port()
    log = directory / "llamaswap.log"
    argv = [sys.executable, "-m", "llamaswap", "run", "--config", str(config)]
    with log.open("wb") as output:
        proc = subprocess.Popen(
            [*argv, "--listen", f"127.0.0.1:{port}"],
            env=kit.llama_server_env(),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not _healthy(url):  # bounded poll: nothing else tells us it listens
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"llamaswap did not come up:\n{log.read_text(errors='replace')}")
            time.sleep(0.02)
        yield proc, url
    finally:
        kit.stop_process_group(proc, timeout=5)


def _healthy(url: str) -> bool:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url + "/health", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


async def load_pair(
    http: aiohttp.ClientSession, url: str, models: TinyModels, pid: int
) -> list[int]:
    for model in ("m1", "m2"):
        async with http.post(f"{url}/api/models/load/{model}") as response:
            assert response.status == 200, await response.text()
    servers = our_servers(models.directory)
    assert sorted(servers.values()) == ["m1", "m2"]
    assert all(parent_of(parent_of(child)) == pid for child in servers)  # via their keepers
    return list(servers)


async def test_sigterm_to_llamaswap_leaves_no_llama_server(
    binary: Path, tiny_models: TinyModels, tmp_path: Path
) -> None:
    """SIGTERM while m1 streams: the stream ends, llamaswap exits 0, nothing survives."""
    models = tiny_models
    yaml_text = llamaswap_yaml(
        binary,
        [llama_model(models, "m1", "--context-shift"), llama_model(models, "m2")],
        {**PAIR, "unloadTimeout": UNLOAD_TIMEOUT},
    )
    body = chat_body("m1", "keep talking", **ENDLESS)
    with llamaswap_process(yaml_text, tmp_path) as (proc, url):
        async with aiohttp.ClientSession(trust_env=False) as http:
            children = await load_pair(http, url, models, proc.pid)
            async with http.post(url + "/v1/chat/completions", json=body) as stream:
                assert stream.status == 200
                await read_chunks(stream, 20)
                started = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                with anyio.fail_after(UNLOAD_TIMEOUT + 2):
                    payloads, broke_off = await read_to_end(stream)
            assert_stream_ended_by_llamaswap(payloads, broke_off)
        code = await anyio.to_thread.run_sync(proc.wait, UNLOAD_TIMEOUT + 10)
        took = time.monotonic() - started
        log = (tmp_path / "llamaswap.log").read_text(errors="replace")
        assert code == 0, log[-3000:]
        assert took <= UNLOAD_TIMEOUT + 5, f"exit took {took:.2f}s"
        # llamaswap waited for its upstreams: they were gone before it exited
        assert served(models) == [], log[-3000:]
        assert wait_gone_sync(children, 0) == []


async def test_sigkill_to_llamaswap_takes_llama_server_down(
    binary: Path, tiny_models: TinyModels, tmp_path: Path
) -> None:
    """No chance to clean up: PR_SET_PDEATHSIG must kill the llama-server children."""
    models = tiny_models
    yaml_text = llamaswap_yaml(binary, [llama_model(models, m) for m in MODEL_IDS], PAIR)
    with llamaswap_process(yaml_text, tmp_path) as (proc, url):
        async with aiohttp.ClientSession(trust_env=False) as http:
            children = await load_pair(http, url, models, proc.pid)
        proc.kill()
        assert await anyio.to_thread.run_sync(proc.wait, 10) == -signal.SIGKILL
        await wait_gone(children, within=5)
        assert served(models) == []


# --- readiness ------------------------------------------------------------------------------


async def test_cold_start_readiness_through_llamaswap(
    binary: Path, tiny_models: TinyModels
) -> None:
    """What llamaswap adds to a cold start, against a poller hitting llama-server's
    /health directly every 2 ms (precise numbers: benchmarks/real_readiness.py)."""
    from benchmarks.real_readiness import cold_starts

    results = await cold_starts(binary, tiny_models.paths["m1"], runs=6)
    added = statistics.median(r.added for r in results)
    detail = [
        (round(r.spawn_to_first_200 * 1000, 1), round(r.spawn_to_answer * 1000, 1)) for r in results
    ]
    assert added < 0.150, f"added p50 {added * 1000:.1f} ms; (first 200, answer) ms: {detail}"
    assert all(r.spawn_to_answer > r.spawn_to_first_200 for r in results), detail
