"""OpenAI answers as Ollama answers: frames while streaming, one object otherwise, thinking,
tool calls with object arguments, done_reason, and the metrics in nanoseconds from
llama.cpp's timings (else usage and our own clock)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llamaswap.http.ollama.from_openai import (
    Kind,
    Reply,
    UpstreamFailed,
    arguments_object,
    created_at,
    done_reason,
    embedding_vectors,
    error_message,
    normalised,
)

TIMINGS = {
    "cache_n": 4,
    "prompt_n": 21,
    "prompt_ms": 12.5,
    "predicted_n": 3,
    "predicted_ms": 30.25,
    "predicted_per_second": 99.2,
}
USAGE = {"prompt_tokens": 25, "completion_tokens": 3, "total_tokens": 28}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def delta(finish: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": fields, "finish_reason": finish}]}


def new_reply(kind: Kind = "chat") -> tuple[Reply, Clock]:
    clock = Clock()
    reply = Reply(kind, "m:latest", 100.0, clock=clock)
    clock.now = 100.5
    reply.granted = 100.5  # half a second to load
    reply.sent = 100.5
    return reply, clock


def stream(reply: Reply, chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    frames = [frame for chunk in chunks for frame in reply.feed(chunk)]
    return frames + reply.final(streamed=True)


def test_chat_stream_frames_and_final_metrics_from_timings() -> None:
    reply, _ = new_reply()
    frames = stream(
        reply,
        [
            delta(role="assistant", reasoning_content="hmm"),
            delta(content="he"),
            delta(content="y"),
            delta("stop"),
            {"choices": [], "usage": USAGE, "timings": TIMINGS},
        ],
    )
    assert [f["message"] for f in frames[:3]] == [
        {"role": "assistant", "content": "", "thinking": "hmm"},
        {"role": "assistant", "content": "he"},
        {"role": "assistant", "content": "y"},
    ]
    assert all(f["done"] is False and f["model"] == "m:latest" for f in frames[:3])
    last = frames[-1]
    assert len(frames) == 4
    assert last["done"] is True and last["done_reason"] == "stop"
    assert last["message"] == {"role": "assistant", "content": ""}
    assert last["load_duration"] == 500_000_000
    assert last["total_duration"] == 500_000_000  # the clock when final() ran
    assert last["prompt_eval_count"] == 25  # cache_n + prompt_n, as Ollama counts
    assert last["prompt_eval_duration"] == 12_500_000
    assert last["eval_count"] == 3
    assert last["eval_duration"] == 30_250_000


def test_chat_without_streaming_is_one_object() -> None:
    reply, _ = new_reply()
    for chunk in (
        delta(reasoning="a"),
        delta(reasoning="b", content="x"),
        delta(content="y"),
        delta("length"),
    ):
        reply.feed(chunk)
    (only,) = reply.final(streamed=False)
    assert only["message"] == {"role": "assistant", "content": "xy", "thinking": "ab"}
    assert only["done"] is True
    assert only["done_reason"] == "length"


def test_generate_frames_use_response_and_thinking() -> None:
    reply, _ = new_reply("generate")
    frames = stream(reply, [delta(reasoning_content="t"), delta(content="r"), delta("stop")])
    assert frames[0] == {
        "model": "m:latest",
        "created_at": frames[0]["created_at"],
        "response": "",
        "thinking": "t",
        "done": False,
    }
    assert frames[1]["response"] == "r"
    assert frames[-1]["response"] == "" and frames[-1]["done"] is True


def test_text_completion_chunks() -> None:
    reply, _ = new_reply("generate")
    reply.feed({"choices": [{"index": 0, "text": "ab", "finish_reason": None}]})
    reply.feed({"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]})
    assert reply.final(streamed=False)[0]["response"] == "ab"


@pytest.mark.parametrize(("stop_type", "reason"), [("eos", "stop"), ("limit", "length")])
def test_llama_cpp_native_chunks(stop_type: str, reason: str) -> None:
    """/infill answers in llama.cpp's own format."""
    reply, _ = new_reply("generate")
    frames = stream(
        reply,
        [
            {"content": "    if", "stop": False, "tokens_predicted": 1},
            {"content": " b:", "stop": False, "tokens_predicted": 2},
            {"content": "", "stop": True, "stop_type": stop_type, "timings": TIMINGS},
        ],
    )
    assert [f["response"] for f in frames] == ["    if", " b:", ""]
    assert frames[-1]["done_reason"] == reason
    assert frames[-1]["eval_count"] == 3
    again, _ = new_reply("generate")
    again.feed({"content": "x", "stop": True, "stop_type": "word"})
    assert again.final(streamed=False)[0]["response"] == "x"


def tool_call_chunks() -> list[dict[str, Any]]:
    opening = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    return [
        delta(tool_calls=[opening]),
        delta(tool_calls=[{"index": 0, "function": {"arguments": '{"city":'}}]),
        delta(tool_calls=[{"index": 0, "function": {"arguments": '"Tokyo"}'}}]),
        delta(tool_calls=[{"index": 1, "id": "call_2", "function": {"name": "t"}}]),
        delta("tool_calls"),
    ]


def test_streamed_tool_calls_are_joined_and_sent_before_the_end() -> None:
    reply, _ = new_reply()
    frames = stream(reply, tool_call_chunks())
    calls = [f["message"]["tool_calls"] for f in frames if "tool_calls" in f["message"]]
    assert calls == [
        [
            {
                "id": "call_1",
                "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Tokyo"}},
            },
            {"id": "call_2", "function": {"index": 1, "name": "t", "arguments": {}}},
        ]
    ]
    assert frames[-2]["done"] is False
    assert frames[-1]["done_reason"] == "stop"  # Ollama says stop for a tool call
    assert "tool_calls" not in frames[-1]["message"]


def test_tool_calls_without_streaming_are_in_the_message() -> None:
    reply, _ = new_reply()
    for chunk in tool_call_chunks():
        reply.feed(chunk)
    (only,) = reply.final(streamed=False)
    assert [c["function"]["name"] for c in only["message"]["tool_calls"]] == ["get_weather", "t"]


def test_a_whole_message_with_tool_calls() -> None:
    """An upstream that ignored `stream` answers with `message`, not `delta`."""
    reply, _ = new_reply()
    message = {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
        ],
    }
    reply.feed({"choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}]})
    (only,) = reply.final(streamed=False)
    assert only["message"]["tool_calls"] == [
        {"id": "c", "function": {"index": 0, "name": "f", "arguments": {"a": 1}}}
    ]


def test_generate_tool_calls_come_with_the_last_frame() -> None:
    reply, _ = new_reply("generate")
    frames = stream(reply, tool_call_chunks())
    assert [f.get("tool_calls") for f in frames[:-1]] == [None] * (len(frames) - 1)
    assert frames[-1]["tool_calls"][0]["function"]["arguments"] == {"city": "Tokyo"}


def test_without_timings_counts_come_from_usage_and_durations_from_the_clock() -> None:
    reply, clock = new_reply()
    clock.now = 100.75
    reply.feed(delta(content="a"))
    clock.now = 101.25
    reply.feed(delta(content="b"))
    reply.feed({"choices": [], "usage": USAGE})
    (only,) = reply.final(streamed=False)
    assert only["prompt_eval_count"] == 25
    assert only["eval_count"] == 3
    assert only["prompt_eval_duration"] == 250_000_000  # sent -> first token
    assert only["eval_duration"] == 500_000_000  # first -> last token


def test_zero_metrics_are_left_out_as_ollama_does() -> None:
    reply, _ = new_reply()
    reply.granted = reply.started
    (only,) = reply.final(streamed=False)
    assert "load_duration" not in only and "eval_count" not in only


def test_an_error_event_is_an_upstream_failure() -> None:
    reply, _ = new_reply()
    with pytest.raises(UpstreamFailed, match="context size exceeded"):
        reply.feed({"error": {"code": 400, "message": "context size exceeded"}})


@pytest.mark.parametrize(
    ("finish", "reason"),
    [("stop", "stop"), ("length", "length"), ("tool_calls", "stop"), (None, "stop")],
)
def test_done_reason(finish: str | None, reason: str) -> None:
    assert done_reason(finish) == reason


def test_arguments_object() -> None:
    assert arguments_object('{"a": [1]}') == {"a": [1]}
    assert arguments_object("") == {}
    assert arguments_object("[1]") == {"arguments": [1]}
    assert arguments_object("{broken") == {"arguments": "{broken"}


def test_error_messages_of_every_shape() -> None:
    assert error_message({"error": {"message": "m", "code": 1}}) == "m"
    assert error_message({"error": "plain"}) == "plain"
    assert error_message({"detail": "fastapi"}) == "fastapi"
    assert json.loads(error_message({"odd": 1})) == {"odd": 1}


def test_created_at_is_rfc3339_utc() -> None:
    assert created_at(0) == "1970-01-01T00:00:00.000000Z"


def test_embeddings_in_input_order_normalised_and_cut() -> None:
    document = {
        "data": [
            {"index": 1, "embedding": [0.0, 2.0, 0.0]},
            {"index": 0, "embedding": [3.0, 4.0, 12.0]},
        ]
    }
    vectors = embedding_vectors(document)
    assert vectors == [[3.0, 4.0, 12.0], [0.0, 2.0, 0.0]]
    assert normalised(vectors[0]) == pytest.approx([3 / 13, 4 / 13, 12 / 13])
    assert normalised(vectors[0], 2) == pytest.approx([0.6, 0.8])
    assert normalised([0.0, 0.0]) == [0.0, 0.0]
    with pytest.raises(UpstreamFailed):
        embedding_vectors({"data": [{"embedding": "AAAA"}]})
