"""§1.6: commands are split with POSIX rules, never run through a shell."""

from __future__ import annotations

import pytest

from llamaswap.config import split_command
from llamaswap.config.shell import strip_comment_lines

# The example from llama-swap's own tests (§1.6).
LLAMA_SWAP_EXAMPLE = (
    "python model1.py \\\n"
    ' -a "double quotes" \\\n'
    " --arg2 'single quotes'\n"
    " -s\n"
    " # comment\n"
    " --arg4 '\"string in string\"'\n"
    " -c \"'single quoted'\""
)


@pytest.mark.parametrize(
    ("text", "argv"),
    [
        (
            LLAMA_SWAP_EXAMPLE,
            [
                "python",
                "model1.py",
                "-a",
                "double quotes",
                "--arg2",
                "single quotes",
                "-s",
                "--arg4",
                '"string in string"',
                "-c",
                "'single quoted'",
            ],
        ),
        ("a b\tc\nd", ["a", "b", "c", "d"]),
        ("a\rb", ["a\rb"]),  # \r is not a separator
        ("  lead   trail  ", ["lead", "trail"]),
        ("a '' b", ["a", "", "b"]),
        ('a "" b', ["a", "", "b"]),
        ("pre'quoted'post\"dq\"", ["prequotedpostdq"]),
        ("'$HOME' \"$HOME\" $HOME", ["$HOME", "$HOME", "$HOME"]),  # no expansion
        ("*.gguf a;b a|b", ["*.gguf", "a;b", "a|b"]),  # no globbing, no operators
        ("x # not a comment", ["x", "#", "not", "a", "comment"]),  # only whole lines
        ("  # comment\ncmd", ["cmd"]),
        (r'"a\$b" "a\`b" "a\"b" "a\\b" "a\nb"', ["a$b", "a`b", 'a"b', "a\\b", "a\\nb"]),
        # A line ending in a backslash is joined first (step 2), even inside quotes.
        ('"a\\\nb"', ["a \nb"]),
        (r"a\ b \x \'", ["a b", "x", "'"]),  # unquoted backslash escapes the next char
        ("'a\\b'", ["a\\b"]),  # single quotes keep backslashes
        ("a 'unterminated b", ["a", "unterminated b"]),
        ('a "unterminated b', ["a", "unterminated b"]),
        ("cmd \\\n  --flag \\\n  value", ["cmd", "--flag", "value"]),
        ("--port ${PID}", ["--port", "${PID}"]),
    ],
)
def test_split_command(text: str, argv: list[str]) -> None:
    assert split_command(text) == argv


@pytest.mark.parametrize("text", ["", "   ", "\n\n", "# only a comment", "  # a\n  # b\n"])
def test_empty_command(text: str) -> None:
    with pytest.raises(ValueError, match="empty command"):
        split_command(text)


def test_strip_comment_lines_keeps_everything_else() -> None:
    assert strip_comment_lines("a\n  # x\nb # y\n#z") == "a\nb # y"
