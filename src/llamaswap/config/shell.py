"""Turning a `cmd`/`cmdStop` string into argv, exactly as llama-swap does.

Commands are never run through a shell: the string is split with POSIX shell quoting
rules and executed directly, so `$HOME`, globs, pipes and `;` reach the program as
literal text. Python's `shlex.split` is close but differs on backslashes inside
double quotes, so the splitter is written out here.
"""

from __future__ import annotations

_BLANKS = frozenset(" \t\n")  # not \r: llama-swap leaves it inside words
_DQUOTE_ESCAPES = frozenset('$`"\\')


def strip_comment_lines(text: str) -> str:
    """Drop every line whose trimmed text starts with `#` (only whole-line comments)."""
    return "\n".join(line for line in text.split("\n") if not line.strip().startswith("#"))


def _join_continuations(text: str) -> str:
    lines = []
    for line in text.split("\n"):
        trimmed = line.strip()
        if trimmed.startswith("#"):
            continue
        lines.append(trimmed[:-1] + " " if trimmed.endswith("\\") else line)
    return "\n".join(lines)


def split_command(text: str) -> list[str]:
    """Split a command the way llama-swap's `SanitizeCommand` does.

    1. whole-line `#` comments are dropped; 2. a line ending in `\\` is joined to the
    next; 3. POSIX word splitting: `'...'` is literal, `"..."` honours backslash only
    before `$ \\` " \\` and newline, an unquoted backslash escapes the next character,
    `""` is an empty argument, an unterminated quote runs to the end. No expansion.

    Raises `ValueError("empty command")` when no word remains.
    """
    source = _join_continuations(text)
    words: list[str] = []
    word: list[str] = []
    in_word = False  # distinguishes an empty quoted word from no word at all
    i, n = 0, len(source)
    while i < n:
        ch = source[i]
        if ch in _BLANKS:
            if in_word:
                words.append("".join(word))
                word, in_word = [], False
            i += 1
        elif ch == "'":
            in_word = True
            end = source.find("'", i + 1)
            end = n if end < 0 else end
            word.append(source[i + 1 : end])
            i = end + 1
        elif ch == '"':
            in_word = True
            i += 1
            while i < n and source[i] != '"':
                if source[i] == "\\" and i + 1 < n:
                    nxt = source[i + 1]
                    if nxt == "\n":
                        i += 2
                        continue
                    if nxt in _DQUOTE_ESCAPES:
                        word.append(nxt)
                        i += 2
                        continue
                word.append(source[i])
                i += 1
            i += 1  # the closing quote (or past the end)
        elif ch == "\\":
            if i + 1 < n:
                if source[i + 1] != "\n":
                    word.append(source[i + 1])
                    in_word = True
                i += 2
            else:
                word.append("\\")
                in_word = True
                i += 1
        else:
            word.append(ch)
            in_word = True
            i += 1
    if in_word:
        words.append("".join(word))
    if not words:
        raise ValueError("empty command")
    return words
