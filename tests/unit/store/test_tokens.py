"""Token figures from response bodies: llama-swap's metrics_test.go scenarios, ported."""

from __future__ import annotations

import json
import math

from llamaswap.store.tokens import NONE, error_message, figures_of

SSE = "text/event-stream"


def test_chat_completion_usage_with_cached_tokens() -> None:
    body = (
        b'{"usage":{"prompt_tokens":12,"completion_tokens":7,'
        b'"prompt_tokens_details":{"cached_tokens":4}}}'
    )
    figures = figures_of(body, "application/json")
    assert (figures.input, figures.output, figures.cached) == (12, 7, 4)
    assert figures.tokens_per_second == -1 and figures.prompt_per_second == -1


def test_llama_cpp_timings_override_usage_and_give_speeds_and_duration() -> None:
    timings = {
        "prompt_n": 20,
        "predicted_n": 50,
        "prompt_per_second": 100.0,
        "predicted_per_second": 40.0,
        "prompt_ms": 200,
        "predicted_ms": 1250,
        "cache_n": 8,
    }
    body = json.dumps({"usage": {"prompt_tokens": 1}, "timings": timings}).encode()
    figures = figures_of(body, "application/json")
    assert (figures.input, figures.output, figures.cached) == (20, 50, 8)
    assert (figures.prompt_per_second, figures.tokens_per_second) == (100.0, 40.0)
    assert figures.timed_ms == 1450


def test_a_stream_is_read_event_by_event() -> None:
    body = (
        b'data: {"choices":[{}]}\n\n'
        b'data: {"usage":{"prompt_tokens":15,"completion_tokens":33}}\n\n'
        b"data: [DONE]\n\n"
    )
    figures = figures_of(body, SSE)
    assert (figures.input, figures.output) == (15, 33)


def test_a_stream_tail_cut_mid_event_is_still_read() -> None:
    """The proxy keeps only the end of a long stream: the first line may be cut."""
    body = b'nt":"lo"}}]}\n\ndata: {"timings":{"prompt_n":3,"predicted_n":9}}\n\ndata: [DONE]\n\n'
    assert (figures_of(body, SSE).input, figures_of(body, "").output) == (3, 9)


def test_vllm_stream_metrics() -> None:
    body = (
        b'data: {"object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":14,'
        b'"total_tokens":166,"completion_tokens":152},"metrics":{"time_to_first_token_ms":70,'
        b'"mean_itl_ms":10}}\n\ndata: [DONE]\n'
    )
    figures = figures_of(body, SSE)
    assert (figures.input, figures.output, figures.cached) == (14, 152, -1)
    assert math.isclose(figures.prompt_per_second, 200.0)
    assert figures.tokens_per_second == 100


def test_vllm_json_metrics_discount_cached_tokens() -> None:
    body = (
        b'{"usage":{"prompt_tokens":42,"completion_tokens":128,"prompt_tokens_details":'
        b'{"cached_tokens":20}},"metrics":{"time_to_first_token_ms":85.2,"mean_itl_ms":9.1}}'
    )
    figures = figures_of(body, "application/json")
    assert (figures.input, figures.output, figures.cached) == (42, 128, 20)
    assert math.isclose(figures.prompt_per_second, (42 - 20) / 0.0852)
    assert math.isclose(figures.tokens_per_second, 1000 / 9.1)


def test_speculative_decoding_needs_both_counters() -> None:
    both = (
        b'{"usage":{},"metrics":{"speculative_decoding":'
        b'{"num_draft_tokens":20,"num_accepted_draft_tokens":14}}}'
    )
    half = b'{"usage":{},"metrics":{"speculative_decoding":{"num_draft_tokens":20}}}'
    assert (figures_of(both).draft, figures_of(both).draft_accepted) == (20, 14)
    assert (figures_of(half).draft, figures_of(half).draft_accepted) == (-1, -1)


def test_timings_draft_counts_are_not_overwritten_by_an_empty_metrics_object() -> None:
    body = (
        b'{"timings":{"prompt_n":20,"predicted_n":50,"draft_n":30,"draft_n_accepted":12},'
        b'"metrics":{"speculative_decoding":{}}}'
    )
    figures = figures_of(body)
    assert (figures.draft, figures.draft_accepted) == (30, 12)


def test_anthropic_usage_names() -> None:
    body = (
        b'data: {"type":"message_start","message":{"usage":{"input_tokens":9,'
        b'"cache_read_input_tokens":5}}}\n\n'
        b'data: {"type":"message_delta","usage":{"output_tokens":21}}\n\n'
    )
    figures = figures_of(body, SSE)
    assert (figures.input, figures.output, figures.cached) == (9, 21, 5)


def test_infill_arrays_read_the_last_element() -> None:
    body = b'[{"content":"a"},{"content":"b","timings":{"prompt_n":4,"predicted_n":6}}]'
    assert figures_of(body, "application/json", "/infill").output == 6
    assert figures_of(body, "application/json", "/v1/completions") == NONE


def test_nothing_to_read() -> None:
    assert figures_of(b"data: [DONE]\n\n", SSE) == NONE
    assert figures_of(b"not json", "application/json") == NONE
    assert figures_of(b"", "") == NONE
    assert figures_of(b'{"choices":[]}', "application/json") == NONE


def test_error_messages_come_from_the_body_else_the_status() -> None:
    assert error_message(500, b'{"error":{"message":"boom"}}') == "boom"
    assert error_message(400, b'{"error":"bad"}') == "bad"
    assert error_message(422, b'{"detail":"nope"}') == "nope"
    assert error_message(503, b"") == "503 Service Unavailable"
    assert error_message(499, b"") == "499 Client Closed Request"
    assert error_message(502, b'data: {"error":{"message":"cut"}}\n\n') == "cut"
    assert len(error_message(500, json.dumps({"message": "x" * 900}).encode())) == 503
