"""The fake upstream answers like a real llama-server and fails exactly as it is told to.

Every test runs the real program (`python -m llamaswap.testing.upstream`) as a child process
on a free 127.0.0.1 port, in its own process group, and the fixtures SIGKILL that group at the
end whatever happened, so no test leaves a process behind. Polling `/health` is fine here: the
fake itself is what is under test.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from llamaswap.testing import FORK_WRAPPER, upstream_command
from llamaswap.testing.bodies import EMBEDDING_DIM, embedding_vector
from llamaswap.testing.options import parse_args, parse_duration
from llamaswap.testing.ports import free_port

MARKER = "LLAMASWAP_FAKE_TEST_MARKER"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy


# --- harness ----------------------------------------------------------------------------------


class Fake:
    """One fake upstream process, with its output collected line by line."""

    def __init__(self, argv: Sequence[str], port: int, env: dict[str, str] | None = None) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.spawned = time.monotonic()
        self.proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # its own process group, so teardown can kill it all
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, text: str, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if text in line:
                    return line
            time.sleep(0.01)
        raise AssertionError(f"no line containing {text!r} in:\n{self.output}")

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        try:
            with _OPENER.open(self.url + path, timeout=timeout) as response:
                return int(response.status), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def wait_listening(self, timeout: float = 10.0) -> float:
        """Seconds from spawn until the port accepts connections."""
        return self._poll(timeout, self._accepts)

    def wait_healthy(self, timeout: float = 10.0, *, watch: bool = True) -> float:
        """Seconds from spawn until `GET /health` first answers 200.

        With `watch`, the spawned process exiting first is a failure; a detaching wrapper
        exits on purpose, so its tests turn that off.
        """
        return self._poll(timeout, lambda: self._answers("/health") == 200, watch)

    def _poll(self, timeout: float, ready: Any, watch: bool = True) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return time.monotonic() - self.spawned
            if watch and self.proc.poll() is not None:
                raise AssertionError(f"exited with {self.proc.returncode}:\n{self.output}")
            time.sleep(0.01)
        raise AssertionError(f"not ready after {timeout} s:\n{self.output}")

    def _accepts(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
        except OSError:
            return False
        return True

    def _answers(self, path: str) -> int | None:
        try:
            return self.get(path, timeout=1.0)[0]
        except OSError:
            return None

    def signal(self, signum: int) -> None:
        os.kill(self.proc.pid, signum)

    def exit_code(self, timeout: float = 5.0) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)


class Spawner:
    """Starts fakes and guarantees they, and any pid handed to `track`, are SIGKILLed."""

    def __init__(self) -> None:
        self.fakes: list[Fake] = []
        self.pids: list[int] = []

    def __call__(
        self, *options: str, env: dict[str, str] | None = None, healthy: bool = True
    ) -> Fake:
        port = free_port()
        fake = self.argv(upstream_command(port, *options), port, env)
        if healthy:
            fake.wait_healthy()
        return fake

    def argv(self, argv: Sequence[str], port: int, env: dict[str, str] | None = None) -> Fake:
        fake = Fake(argv, port, env)
        self.fakes.append(fake)
        return fake

    def track(self, pid: int) -> None:
        self.pids.append(pid)

    def close(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for fake in self.fakes:
            fake.kill()


@pytest.fixture
def spawn() -> Iterator[Spawner]:
    spawner = Spawner()
    try:
        yield spawner
    finally:
        spawner.close()


@pytest.fixture(scope="module")
def shared() -> Iterator[Fake]:
    """One fake for the endpoint tests: `--model m1 --respond hey --chunks 3`."""
    spawner = Spawner()
    try:
        env = {MARKER: "injected-42"}
        yield spawner("--model", "m1", "--respond", "hey", "--chunks", "3", env=env)
    finally:
        spawner.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def sse_events(raw: bytes) -> list[tuple[str | None, str]]:
    """(event name, data) for each server-sent event in a complete body."""
    events: list[tuple[str | None, str]] = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data.append(line.removeprefix("data: "))
        events.append((name, "\n".join(data)))
    return events


def sse_data(raw: bytes) -> list[Any]:
    """The data of each event, JSON-decoded except `[DONE]`."""
    return [data if data == "[DONE]" else json.loads(data) for _, data in sse_events(raw)]


async def timed_frames(response: aiohttp.ClientResponse) -> list[tuple[float, int, bytes]]:
    """(arrival time, read number, frame) for each SSE frame, as the client's reads saw them."""
    frames: list[tuple[float, int, bytes]] = []
    buffer = b""
    reads = 0
    async for chunk in response.content.iter_any():
        now, reads = time.monotonic(), reads + 1
        buffer += chunk
        while b"\n\n" in buffer:
            frame, buffer = buffer.split(b"\n\n", 1)
            frames.append((now, reads, frame))
    return frames


def content_of(frame: bytes) -> str | None:
    data = frame.decode().removeprefix("data: ")
    if data == "[DONE]":
        return None
    choices = json.loads(data)["choices"]
    return choices[0]["delta"].get("content") if choices else None


# --- pure parts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0.0), ("1.5", 1.5), ("250ms", 0.25), ("1m30s", 90.0), ("2s500ms", 2.5), (".5s", 0.5)],
)
def test_durations_accept_seconds_and_go_syntax(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "-1", "abc", "5x", "nan", "inf", "1s-"])
def test_durations_reject_the_rest(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_simple_responder_flag_spellings_are_accepted() -> None:
    opts = parse_args(["-port", "9", "-silent", "-ignore-sig-term", "-respond", "x"])
    assert (opts.port, opts.silent, opts.ignore_sigterm, opts.respond) == (9, True, True, "x")
    assert parse_args(["--port", "9", "--chunk-gap", "20ms"]).chunk_gap == pytest.approx(0.02)


def test_embedding_vectors_are_deterministic_unit_vectors() -> None:
    a, b = embedding_vector("hello"), embedding_vector("hello")
    assert a == b != embedding_vector("world")
    assert len(a) == EMBEDDING_DIM
    assert sum(v * v for v in a) == pytest.approx(1.0, abs=1e-4)


# --- start-up and plain endpoints -------------------------------------------------------------


def test_starts_quickly_and_announces_itself(spawn: Spawner) -> None:
    fake = spawn(healthy=False)
    assert fake.wait_healthy() < 5.0
    banner = fake.wait_for_line("llamaswap fake upstream:")
    assert banner == (
        f"llamaswap fake upstream: model=TheExpectedModel pid={fake.proc.pid} port={fake.port}"
    )
    assert fake.get("/health") == (200, b'{"status":"ok"}')


def test_plain_text_endpoints(shared: Fake) -> None:
    assert shared.get("/") == (200, b"GET /")
    assert shared.get("/test") == (200, b"hey")
    status, body = shared.get("/env")
    lines = body.decode().splitlines()
    assert status == 200
    assert lines[0] == "hey"
    assert f"{MARKER}=injected-42" in lines


@pytest.mark.anyio
async def test_metadata_endpoints(shared: Fake) -> None:
    async with aiohttp.ClientSession(shared.url) as http:
        async with http.get("/v1/models") as r:
            models = await r.json()
        assert models["object"] == "list"
        assert [m["id"] for m in models["data"]] == ["m1"]
        async with http.get("/props") as r:
            props = await r.json()
        assert props["model_alias"] == "m1"
        assert props["total_slots"] > 0
        async with http.get("/v1/audio/voices", params={"model": "tts"}) as r:
            assert await r.json() == {"voices": ["voice1"], "model": "tts"}
        async with http.get("/sdapi/v1/loras") as r:
            assert await r.json() == {"loras": []}
        async with http.post("/v1/tasks/run", json={"x": 1}) as r:
            assert await r.json() == {"ok": True, "path": "/v1/tasks/run"}


# --- OpenAI chat and text completions ---------------------------------------------------------


@pytest.mark.anyio
async def test_chat_completion_is_openai_shaped_with_debug_fields(shared: Fake) -> None:
    payload = json.dumps({"model": "client-model", "messages": [{"role": "user", "content": "x"}]})
    headers = {"Authorization": "Bearer sk-1", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(shared.url) as http:
        async with http.post("/v1/chat/completions", data=payload, headers=headers) as r:
            assert r.status == 200
            body = await r.json()
        async with http.post("/v1/chat/completions", json={"messages": []}) as r:
            anonymous = await r.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "hey"}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 25, "completion_tokens": 3, "total_tokens": 28}
    assert body["timings"]["prompt_n"] == 25
    assert body["timings"]["predicted_n"] == 3
    assert body["timings"]["prompt_ms"] > 0
    assert body["model"] == "client-model"
    assert body["responseMessage"] == "hey"
    assert body["request_body"] == payload
    assert body["h_content_length"] == str(len(payload))
    assert body["h_authorization"] == "Bearer sk-1"
    assert anonymous["model"] == "m1"
    assert anonymous["h_authorization"] == ""


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["body", "query"])
async def test_chat_stream_frames(shared: Fake, how: str) -> None:
    body: dict[str, Any] = {"model": "m1", "messages": []}
    params = {"stream": "true"} if how == "query" else {}
    if how == "body":
        body["stream"] = True
    async with (
        aiohttp.ClientSession(shared.url) as http,
        http.post("/v1/chat/completions", json=body, params=params) as r,
    ):
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        raw = await r.read()
    frames = sse_data(raw)
    assert frames[-1] == "[DONE]"
    chunks = frames[:-1]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert [c["choices"][0]["delta"].get("content") for c in chunks[:3]] == ["hey"] * 3
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "role" not in chunks[1]["choices"][0]["delta"]
    assert len(chunks) == 4  # no usage chunk unless asked for
    assert chunks[3]["choices"][0]["finish_reason"] == "stop"
    assert chunks[3]["timings"]["predicted_n"] == 3


@pytest.mark.anyio
async def test_chat_stream_usage_chunk_when_asked(shared: Fake) -> None:
    body = {"stream": True, "stream_options": {"include_usage": True}, "messages": []}
    async with (
        aiohttp.ClientSession(shared.url) as http,
        http.post("/v1/chat/completions", json=body) as r,
    ):
        frames = sse_data(await r.read())
    assert frames[-1] == "[DONE]"
    usage = frames[-2]
    assert usage["choices"] == []
    assert usage["usage"] == {"prompt_tokens": 25, "completion_tokens": 3, "total_tokens": 28}
    assert "timings" in usage
    assert frames[-3]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.anyio
async def test_text_completions(shared: Fake) -> None:
    async with aiohttp.ClientSession(shared.url) as http:
        async with http.post("/v1/completions", json={"prompt": "p"}) as r:
            body = await r.json()
        async with http.post("/v1/completions", json={"prompt": "p", "stream": True}) as r:
            frames = sse_data(await r.read())
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"] == "hey"
    assert body["usage"]["completion_tokens"] == 3
    assert body["responseMessage"] == "hey"
    assert frames[-1] == "[DONE]"
    assert [f["choices"][0]["text"] for f in frames[:3]] == ["hey"] * 3
    assert frames[3]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/completion", "/infill"])
async def test_llama_native_completion(shared: Fake, path: str) -> None:
    async with aiohttp.ClientSession(shared.url) as http:
        async with http.post(path, json={"prompt": "p"}) as r:
            body = await r.json()
        async with http.post(path, json={"prompt": ["a", "b"]}) as r:
            several = await r.json()
        async with http.post(path, json={"prompt": "p", "stream": True}) as r:
            frames = sse_data(await r.read())
    assert body["content"] == "hey"
    assert body["stop"] is True
    assert body["tokens_predicted"] == 3
    assert body["timings"]["predicted_n"] == 3
    assert [item["index"] for item in several] == [0, 1]
    assert "[DONE]" not in frames  # llama.cpp's native stream has none
    assert [f["content"] for f in frames[:3]] == ["hey"] * 3
    assert [f["stop"] for f in frames] == [False, False, False, True]
    assert "timings" in frames[-1]


# --- embeddings and rerank --------------------------------------------------------------------


@pytest.mark.anyio
async def test_embeddings(shared: Fake) -> None:
    async with aiohttp.ClientSession(shared.url) as http:
        async with http.post("/v1/embeddings", json={"input": "hello", "model": "e"}) as r:
            one = await r.json()
        async with http.post("/v1/embeddings", json={"input": ["hello", "world", [1, 2]]}) as r:
            many = await r.json()
        request = {"input": "hello", "encoding_format": "base64"}
        async with http.post("/v1/embeddings", json=request) as r:
            packed = await r.json()
        async with http.post("/v1/embeddings", json={"model": "e"}) as r:
            assert r.status == 400
            assert (await r.json())["error"]["type"] == "invalid_request_error"
    assert one["object"] == "list"
    assert one["model"] == "e"
    assert one["data"][0]["object"] == "embedding"
    assert len(one["data"][0]["embedding"]) == EMBEDDING_DIM
    assert [d["index"] for d in many["data"]] == [0, 1, 2]
    assert many["data"][0]["embedding"] == one["data"][0]["embedding"]
    assert many["data"][1]["embedding"] != one["data"][0]["embedding"]
    assert one["usage"]["prompt_tokens"] > 0
    floats = struct.unpack(f"<{EMBEDDING_DIM}f", base64.b64decode(packed["data"][0]["embedding"]))
    assert floats == pytest.approx(one["data"][0]["embedding"], abs=1e-6)


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/v1/rerank", "/rerank", "/v1/reranking", "/reranking"])
async def test_rerank(shared: Fake, path: str) -> None:
    request = {"query": "red apple", "documents": ["a blue sky", "red apple pie", "apple"]}
    async with aiohttp.ClientSession(shared.url) as http:
        async with http.post(path, json=request) as r:
            body = await r.json()
        async with http.post(path, json={**request, "top_n": 1}) as r:
            top = await r.json()
        async with http.post(path, json={"documents": []}) as r:
            assert r.status == 400
    assert [x["index"] for x in body["results"]] == [1, 2, 0]
    assert body["results"][0]["relevance_score"] > body["results"][1]["relevance_score"]
    assert [x["index"] for x in top["results"]] == [1]


# --- Anthropic and Responses ------------------------------------------------------------------


@pytest.mark.anyio
async def test_anthropic_messages(shared: Fake) -> None:
    request = {"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession(shared.url) as http:
        async with http.post("/v1/messages", json=request) as r:
            message = await r.json()
        async with http.post("/v1/messages/count_tokens", json=request) as r:
            counted = await r.json()
        async with http.post("/v1/messages", json={**request, "stream": True}) as r:
            assert r.headers["Content-Type"].startswith("text/event-stream")
            events = sse_events(await r.read())
    assert message["type"] == "message"
    assert message["role"] == "assistant"
    assert message["content"] == [{"type": "text", "text": "hey"}]
    assert message["model"] == "claude"
    assert message["stop_reason"] == "end_turn"
    assert message["usage"] == {"input_tokens": counted["input_tokens"], "output_tokens": 3}
    assert counted["input_tokens"] > 0
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 3,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    payloads = [json.loads(data) for _, data in events]
    assert [p["type"] for p in payloads] == names  # `type` always matches the event line
    assert payloads[2]["delta"] == {"type": "text_delta", "text": "hey"}
    assert payloads[-2]["delta"]["stop_reason"] == "end_turn"
    assert payloads[-2]["usage"]["output_tokens"] == 3


@pytest.mark.anyio
async def test_responses_api(shared: Fake) -> None:
    async with aiohttp.ClientSession(shared.url) as http:
        async with http.post("/v1/responses", json={"model": "r", "input": "hi"}) as r:
            body = await r.json()
        request = {"model": "r", "input": "hi", "stream": True}
        async with http.post("/v1/responses", json=request) as r:
            events = sse_events(await r.read())
    assert body["object"] == "response"
    assert body["status"] == "completed"
    assert body["output"][0]["content"][0] == {
        "type": "output_text",
        "text": "hey",
        "annotations": [],
    }
    assert body["usage"]["output_tokens"] == 3
    names = [name for name, _ in events]
    assert names[0] == "response.created"
    assert names.count("response.output_text.delta") == 3
    assert names[-1] == "response.completed"
    completed = json.loads(events[-1][1])
    assert completed["response"]["output"][0]["content"][0]["text"] == "hey" * 3
    numbers = [json.loads(data)["sequence_number"] for _, data in events]
    assert numbers == sorted(numbers)


# --- audio, images, stable diffusion ----------------------------------------------------------


@pytest.mark.anyio
async def test_audio_speech_checks_the_model(shared: Fake) -> None:
    async with aiohttp.ClientSession(shared.url) as http:
        async with http.post("/v1/audio/speech", json={"model": "m1", "input": "x"}) as r:
            assert (r.status, await r.json()) == (200, {"message": "ok"})
        async with http.post("/v1/audio/speech", json={"model": "other"}) as r:
            assert r.status == 400
            error = (await r.json())["error"]
    assert error["message"] == "Invalid model: other, expected: m1"


def _form(**parts: str | bytes) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for name, value in parts.items():
        if isinstance(value, bytes):
            form.add_field(name, value, filename=f"{name}.bin")
        else:
            form.add_field(name, value)
    return form


@pytest.mark.anyio
async def test_audio_transcription_multipart(shared: Fake) -> None:
    path = "/v1/audio/transcriptions"
    async with aiohttp.ClientSession(shared.url) as http:
        async with http.post(path, data=_form(model="whisper", file=b"x" * 12345)) as r:
            assert r.status == 200
            body = await r.json()
        async with http.post(path, data=_form(model="whisper")) as r:
            missing_file = r.status
        async with http.post(path, data=_form(file=b"abc")) as r:
            missing_model = r.status
        async with http.post(path, json={"model": "whisper"}) as r:
            not_multipart = r.status
    assert body["text"] == "The length of the file is 12345 bytes"
    assert body["model"] == "whisper"
    assert body["h_content_type"].startswith("multipart/form-data; boundary=")
    assert int(body["h_content_length"]) > 12345
    assert (missing_file, missing_model, not_multipart) == (400, 400, 400)


@pytest.mark.anyio
async def test_images_and_stable_diffusion(shared: Fake) -> None:
    async with aiohttp.ClientSession(shared.url) as http:
        async with http.post("/v1/images/generations", json={"prompt": "cat", "n": 2}) as r:
            generated = await r.json()
        form = _form(model="sd", prompt="hat", image=b"\x89PNG....")
        async with http.post("/v1/images/edits", data=form) as r:
            edited = await r.json()
        for path in ("/sdapi/v1/txt2img", "/sdapi/v1/img2img"):
            async with http.post(path, json={"model": "sd-x", "prompt": "p"}) as r:
                assert await r.json() == {"model": "sd-x", "images": []}
    assert len(generated["data"]) == 2
    assert base64.b64decode(generated["data"][0]["b64_json"]).startswith(b"\x89PNG")
    assert isinstance(generated["created"], int)
    assert len(edited["data"]) == 1


# --- slow-respond, wait, errors, big bodies, request log --------------------------------------


@pytest.mark.anyio
async def test_slow_respond_streams_characters(shared: Fake) -> None:
    async with aiohttp.ClientSession(shared.url) as http:
        params = {"echo": "abcd", "delay": "0.1"}
        async with http.get("/slow-respond", params=params) as r:
            start = time.monotonic()
            arrivals: list[tuple[float, str]] = []
            async for chunk in r.content.iter_any():
                arrivals.extend((time.monotonic() - start, c) for c in chunk.decode())
        async with http.get("/slow-respond", params={"delay": "0ms"}) as r:
            default_echo = await r.text()
        async with http.get("/slow-respond", params={"delay": "soon"}) as r:
            bad = (r.status, await r.text())
    assert "".join(c for _, c in arrivals) == "abcd"
    assert arrivals[-1][0] >= 0.8 * 0.3
    assert default_echo == ("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
    assert bad[0] == 400
    assert bad[1].startswith("Invalid duration")


@pytest.mark.anyio
async def test_wait_delays_answers(shared: Fake) -> None:
    async with aiohttp.ClientSession(shared.url) as http:
        for params, body in [({"wait": "0.3"}, {}), ({"wait": "300ms"}, {}), ({}, {"wait": 0.3})]:
            start = time.monotonic()
            async with http.post("/v1/chat/completions", params=params, json=body) as r:
                assert r.status == 200
            assert time.monotonic() - start >= 0.8 * 0.3
        start = time.monotonic()
        async with http.get("/test", params={"wait": "0.2"}) as r:
            assert await r.text() == "hey"
        assert time.monotonic() - start >= 0.8 * 0.2
        # A stream sends its headers first and waits before the first frame.
        start = time.monotonic()
        request = {"stream": True, "wait": 0.5}
        async with http.post("/v1/chat/completions", json=request) as r:
            headers_after = time.monotonic() - start
            await r.content.readuntil(b"\n\n")
            first_frame_after = time.monotonic() - start
            await r.read()
        assert headers_after < 0.4
        assert first_frame_after >= 0.8 * 0.5
        async with http.get("/test", params={"wait": "-1"}) as r:
            assert r.status == 400


@pytest.mark.anyio
async def test_errors_are_openai_shaped(shared: Fake) -> None:
    async with aiohttp.ClientSession(shared.url) as http:
        async with http.get("/no/such/path") as r:
            assert r.status == 404
            not_found = await r.json()
        async with http.get("/v1/chat/completions") as r:
            assert r.status == 405
            assert "error" in await r.json()
        async with http.post("/v1/chat/completions", data=b"{not json") as r:
            assert r.status == 400
            invalid = await r.json()
        async with http.post("/v1/embeddings", json=[1, 2]) as r:
            assert r.status == 400
    assert not_found == {
        "error": {
            "code": 404,
            "message": "File Not Found",
            "type": "not_found_error",
            "param": None,
        }
    }
    assert invalid["error"]["type"] == "invalid_request_error"
    assert invalid["error"]["code"] == 400
    assert "invalid JSON" in invalid["error"]["message"]


@pytest.mark.anyio
async def test_body_and_header_size_do_not_matter(shared: Fake) -> None:
    filler = "x" * (8 << 20)
    payload = json.dumps({"messages": [{"role": "user", "content": filler}]})
    headers = {"Authorization": "Bearer " + "k" * 100_000}
    async with (
        aiohttp.ClientSession(shared.url) as http,
        http.post("/v1/chat/completions", data=payload, headers=headers) as r,
    ):
        assert r.status == 200
        body = await r.json()
    assert body["h_content_length"] == str(len(payload))
    assert len(body["request_body"]) == len(payload)
    assert len(body["h_authorization"]) == 100_007


def test_one_log_line_per_request(shared: Fake) -> None:
    shared.get("/test")
    shared.get("/definitely-missing")
    shared.wait_for_line("GET /test 200")
    shared.wait_for_line("GET /definitely-missing 404")


# --- SDKs, when installed ---------------------------------------------------------------------


def test_official_anthropic_sdk_consumes_the_stream(shared: Fake) -> None:
    anthropic = pytest.importorskip("anthropic")
    client = anthropic.Anthropic(base_url=shared.url, api_key="k")
    messages = [{"role": "user", "content": "hello"}]
    with client.messages.stream(model="claude", max_tokens=9, messages=messages) as stream:
        assert "".join(stream.text_stream) == "hey" * 3
        final = stream.get_final_message()
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 3


def test_official_openai_sdk_consumes_the_stream(shared: Fake) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=shared.url + "/v1", api_key="k")
    stream = client.chat.completions.create(
        model="m1", messages=[], stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "hey" * 3
    assert chunks[-1].usage.completion_tokens == 3
    assert len(client.embeddings.create(model="m1", input="x").data[0].embedding) == 8


# --- streaming shape, disconnects, SIGTERM mid-stream -----------------------------------------


@pytest.mark.anyio
async def test_stream_frames_arrive_separately_with_the_gap(spawn: Spawner) -> None:
    gap = 0.15
    fake = spawn("--chunks", "5", "--chunk-gap", str(gap))
    async with aiohttp.ClientSession(fake.url) as http:
        async with http.post("/v1/chat/completions", json={"stream": True}) as r:
            frames = await timed_frames(r)
        content = [(t, read) for t, read, frame in frames if content_of(frame)]
        assert len(content) == 5
        assert len({read for _, read in content}) == 5  # each content frame in its own read
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(content)]
        assert all(g >= 0.8 * gap for g in gaps), gaps
        assert frames[-1][2] == b"data: [DONE]"

        # A client that hangs up mid-stream cancels it; the server carries on.
        async with http.post("/v1/chat/completions", json={"stream": True}) as r:
            await r.content.readuntil(b"\n\n")
        # (waiting in a thread: the event loop must run to actually close the socket)
        line = await anyio.to_thread.run_sync(fake.wait_for_line, "/v1/chat/completions 200 (")
        assert line.endswith(("(cancelled)", "(client disconnected)"))
        async with http.get("/health") as r:
            assert r.status == 200

        # SIGTERM during a stream still exits 0, promptly.
        async with http.post("/v1/chat/completions", json={"stream": True}) as r:
            await r.content.readuntil(b"\n\n")
            signalled = time.monotonic()
            fake.signal(signal.SIGTERM)
            assert await anyio.to_thread.run_sync(fake.exit_code) == 0
            assert time.monotonic() - signalled < 1.5
    fake.wait_for_line("SIGTERM received, exiting")


@pytest.mark.anyio
async def test_crash_mid_stream_truncates_and_exits_7(spawn: Spawner) -> None:
    fake = spawn("--crash-mid-stream", "--chunks", "6", "--chunk-gap", "0.02")
    received = b""
    async with (
        aiohttp.ClientSession(fake.url) as http,
        http.post("/v1/chat/completions", json={"stream": True}) as r,
    ):
        try:
            async for chunk in r.content.iter_any():
                received += chunk
        except aiohttp.ClientPayloadError:
            pass  # the connection died inside a chunked body: that is the point
    assert await anyio.to_thread.run_sync(fake.exit_code) == 7
    frames = [f for f in received.split(b"\n\n") if f]
    assert [content_of(f) for f in frames] == ["hi"] * 3
    assert b"[DONE]" not in received
    fake.wait_for_line("crashing mid-stream after 3 of 6 chunks")


@pytest.mark.anyio
async def test_fail_after_and_silent(spawn: Spawner) -> None:
    fake = spawn("--fail-after", "2", "--silent")
    async with aiohttp.ClientSession(fake.url) as http:
        async with http.post("/v1/chat/completions", data=b"{bad") as r:
            assert r.status == 400  # a failed request does not count
        async with http.post("/v1/chat/completions", json={}) as r:
            assert r.status == 200
        async with http.post("/v1/embeddings", json={"input": "x"}) as r:
            assert r.status == 200
        for path, body in [("/v1/chat/completions", {}), ("/v1/embeddings", {"input": "x"})]:
            async with http.post(path, json=body) as r:
                assert r.status == 500
                error = (await r.json())["error"]
                assert (error["code"], error["type"]) == (500, "server_error")
        for path in ("/health", "/v1/models", "/test"):
            async with http.get(path) as r:
                assert r.status == 200
    assert fake.lines[0].startswith("llamaswap fake upstream:")
    assert not any(line.startswith(("GET ", "POST ")) for line in fake.lines)


# --- health, start-up delay ------------------------------------------------------------------


def test_startup_delay_answers_loading_until_due(spawn: Spawner) -> None:
    delay = 2.0
    fake = spawn("--startup-delay", str(delay), healthy=False)
    assert fake.wait_listening() < delay  # bound at once, answering 503 meanwhile
    status, body = fake.get("/health")
    assert status == 503
    error = json.loads(body)["error"]
    assert (error["code"], error["message"], error["type"]) == (
        503,
        "Loading model",
        "unavailable_error",
    )
    assert fake.get("/v1/models")[0] == 503  # like llama-server, every path is loading
    healthy_after = fake.wait_healthy()
    assert 0.9 * delay <= healthy_after < delay + 2
    assert fake.get("/health") == (200, b'{"status":"ok"}')


def test_never_healthy_and_sigint_twice(spawn: Spawner) -> None:
    fake = spawn("--never-healthy", healthy=False)
    fake.wait_listening()
    for _ in range(3):
        assert fake.get("/health")[0] == 503
        time.sleep(0.05)
    assert fake.get("/test") == (200, b"hi")
    fake.signal(signal.SIGINT)
    fake.wait_for_line("SIGINT received, send another SIGINT to exit")
    assert fake.get("/test")[0] == 200
    fake.signal(signal.SIGINT)
    assert fake.exit_code() == 0


# --- signals and timers -----------------------------------------------------------------------


def _catches_sigterm(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status").read_text()
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


def test_ignore_sigterm_even_during_startup(spawn: Spawner) -> None:
    port = free_port()
    argv = upstream_command(port, "-ignore-sig-term", "-respond", "still here")
    argv[argv.index("--port")] = "-port"  # simple-responder's spelling
    fake = spawn.argv(argv, port)
    deadline = time.monotonic() + 5
    while not _catches_sigterm(fake.proc.pid):  # handlers go in before the slow imports
        assert time.monotonic() < deadline
        time.sleep(0.005)
    fake.signal(signal.SIGTERM)
    fake.wait_healthy()
    fake.signal(signal.SIGTERM)
    fake.wait_for_line("SIGTERM ignored")
    time.sleep(0.1)
    assert fake.get("/test") == (200, b"still here")
    assert fake.proc.poll() is None
    fake.signal(signal.SIGKILL)
    assert fake.exit_code() == -signal.SIGKILL


def test_slow_stop_keeps_serving_then_exits_zero(spawn: Spawner) -> None:
    fake = spawn("--slow-stop", "0.8")
    signalled = time.monotonic()
    fake.signal(signal.SIGTERM)
    time.sleep(0.2)
    assert fake.get("/test") == (200, b"hi")
    assert fake.exit_code() == 0
    assert 0.75 <= time.monotonic() - signalled < 2.5
    fake.wait_for_line("SIGTERM received, exiting in 0.8 s")


def test_exit_after_zero_exits_before_binding(spawn: Spawner) -> None:
    fake = spawn("--exit-after", "0", healthy=False)
    assert fake.exit_code() == 3
    fake.wait_for_line("exiting after 0 s")
    assert not any("llamaswap fake upstream:" in line for line in fake.lines)


def test_exit_after_counts_from_process_start(spawn: Spawner) -> None:
    fake = spawn("--exit-after", "1.5", healthy=False)
    assert fake.exit_code() == 3
    assert 1.4 <= time.monotonic() - fake.spawned < 3.0
    fake.wait_for_line("exiting after 1.5 s")


def test_busy_port_exits_1(spawn: Spawner) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        fake = spawn.argv(upstream_command(port), port)
        assert fake.exit_code() == 1
    assert f"cannot listen on 127.0.0.1:{port}" in fake.output


# --- fork_wrapper.sh --------------------------------------------------------------------------


def _ppid_and_pgid(pid: int) -> tuple[int, int]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[2])


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _wrapped(spawn: Spawner, env: dict[str, str]) -> tuple[Fake, int]:
    port = free_port()
    fake = spawn.argv([str(FORK_WRAPPER), *upstream_command(port)], port, env)
    child = int(fake.wait_for_line("wrapper child pid").rsplit(" ", 1)[1])
    spawn.track(child)
    return fake, child


def test_fork_wrapper_makes_the_server_a_grandchild(spawn: Spawner) -> None:
    assert os.access(FORK_WRAPPER, os.X_OK)
    wrapper, child = _wrapped(spawn, {})
    wrapper.wait_healthy()
    assert _ppid_and_pgid(child) == (wrapper.proc.pid, wrapper.proc.pid)
    wrapper.signal(signal.SIGKILL)  # only the wrapper: its child is orphaned, still serving
    wrapper.proc.wait(5)
    assert wrapper.get("/health")[0] == 200
    os.killpg(wrapper.proc.pid, signal.SIGKILL)  # the process group still reaches it
    deadline = time.monotonic() + 5
    while _alive(child):
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_fork_wrapper_detach_mode_exits_at_once(spawn: Spawner) -> None:
    wrapper, child = _wrapped(spawn, {"FORK_WRAPPER_DETACH": "1"})
    assert wrapper.exit_code() == 0
    wrapper.wait_healthy(watch=False)
    assert _ppid_and_pgid(child)[1] == wrapper.proc.pid  # still in the wrapper's group


def test_fork_wrapper_setsid_mode_leaves_the_group(spawn: Spawner) -> None:
    wrapper, child = _wrapped(spawn, {"FORK_WRAPPER_SETSID": "1"})
    wrapper.wait_healthy()
    assert _ppid_and_pgid(child) == (wrapper.proc.pid, child)
    assert os.getsid(child) == child
    os.killpg(wrapper.proc.pid, signal.SIGKILL)
    wrapper.proc.wait(5)
    assert _alive(child)
    assert wrapper.get("/health")[0] == 200  # the group kill missed it; teardown kills by pid
