"""Model names with tags, the incremental SSE decoder, NDJSON lines."""

from __future__ import annotations

import json

import pytest

from llamaswap.http.ollama.answer import encode
from llamaswap.http.ollama.names import candidates, display_name, split_tag
from llamaswap.http.ollama.sse import SseDecoder, chunk_of


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("llama3", ("llama3", "")),
        ("llama3:8b", ("llama3", "8b")),
        ("ns/model:latest", ("ns/model", "latest")),
        ("host:11434/ns/model", ("host:11434/ns/model", "")),
    ],
)
def test_split_tag(name: str, parts: tuple[str, str]) -> None:
    assert split_tag(name) == parts


def test_display_names_and_candidates() -> None:
    assert display_name("qwen") == "qwen:latest"
    assert display_name("qwen3:8b") == "qwen3:8b"
    assert candidates("qwen:latest") == ["qwen:latest", "qwen"]
    assert candidates("qwen3:8b") == ["qwen3:8b", "qwen3"]
    assert candidates("qwen") == ["qwen"]
    assert candidates(":latest") == [":latest"]


def test_sse_decoder_survives_any_split() -> None:
    raw = (
        'data: {"a": "\u00e9t\u00e9"}\n\n: keep-alive\n\n'
        "data: x\r\ndata: y\r\n\r\nevent: e\ndata:[DONE]\n\ndata: tail"
    ).encode()
    for size in (1, 2, 3, 7, len(raw)):
        decoder = SseDecoder()
        payloads = []
        for start in range(0, len(raw), size):
            payloads += decoder.feed(raw[start : start + size])
        payloads += decoder.close()
        assert payloads == ['{"a": "\u00e9t\u00e9"}', "x\ny", "[DONE]", "tail"]
    assert chunk_of('{"a": 1}') == {"a": 1}
    assert chunk_of("[DONE]") is None
    assert chunk_of("not json") is None


def test_ndjson_lines_are_utf8_and_survive_lone_surrogates() -> None:
    assert encode({"a": "\u00e9"}) == '{"a":"\u00e9"}\n'.encode()
    line = encode({"a": "half \ud83d"})
    assert line == b'{"a":"half \\ud83d"}\n'
    assert json.loads(line) == {"a": "half \ud83d"}
