"""W8: model IDs a client can address; and one error for a bad startPort, not two."""

from __future__ import annotations

import json

import pytest

from .helpers import MODEL, assert_problem, load, problems


def config_with_id(model_id: str) -> str:
    return f"models:\n  ok:\n    {MODEL}\n  {json.dumps(model_id)}:\n    {MODEL}\n"


@pytest.mark.parametrize(
    ("model_id", "reason"),
    [
        ("", 'model ID "" is empty'),
        ("   ", 'model ID "   " is empty'),
        (" m", "starts or ends with whitespace"),
        ("m\t", "starts or ends with whitespace"),
        ("a\u0007b", "contains the control character U+0007"),
        ("a\nb", "contains the control character U+000A"),
        ("a\u0085b", "contains the control character U+0085"),
        ("..\\evil", "contains '\\'"),
        ("/etc", "starts or ends with '/'"),
        ("org/", "starts or ends with '/'"),
        ("org//model", "contains an empty path segment ('//')"),
        ("../evil", "contains the path segment '..'"),
        ("org/../model", "contains the path segment '..'"),
        ("org/./model", "contains the path segment '.'"),
        ("..", "contains the path segment '..'"),
    ],
)
def test_unaddressable_model_ids_are_refused(model_id: str, reason: str) -> None:
    problem = assert_problem(config_with_id(model_id), "models", reason)
    assert problem.line == 5  # the line of the ID itself
    assert json.dumps(model_id) in problem.message


@pytest.mark.parametrize(
    "model_id",
    ["org/model", "qwen2.5-7b", "a..b", "...", "model:latest", "two words", "ünï", "a?b#c%41"],
)
def test_ids_with_ordinary_characters_and_inner_slashes_load(model_id: str) -> None:
    assert model_id in load(config_with_id(model_id)).models


def test_a_model_that_is_not_a_mapping_is_still_checked_for_its_id() -> None:
    messages = [p.message for p in problems("models:\n  ../evil: just a string\n")]
    assert any("contains the path segment '..'" in message for message in messages)


@pytest.mark.parametrize("value", ["-1", "0", "70000"])
def test_a_bad_start_port_is_one_error_not_one_per_model(value: str) -> None:
    text = f"""
    startPort: {value}
    models:
      a: {{cmd: "srv --port ${{PORT}}"}}
      b: {{cmd: "srv --port ${{PORT}}"}}
    """
    problem = assert_problem(text, "startPort", "startPort must be")
    assert problem.line == 2
