"""argparse as llama-swap users type it: Go's flag syntax, and "did you mean" on typos.

Go's `flag` package takes `-name` and `--name`, `-name value` and `-name=value`, and
booleans as `-name` or `-name=true|false`. argparse already takes the first three when
each option has both spellings; `Parser` adds the `=true|false` booleans and, for an
unknown option, names the closest known one. Imports nothing heavy: `llamaswap
--version` goes through here.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from typing import Any

# strconv.ParseBool's spellings, which Go's flag package accepts after `=`
GO_TRUE = frozenset(("1", "t", "T", "TRUE", "true", "True"))
GO_FALSE = frozenset(("0", "f", "F", "FALSE", "false", "False"))


def spellings(name: str) -> tuple[str, str]:
    """`config` -> (`-config`, `--config`): llama-swap's spelling and the GNU one."""
    return f"-{name}", f"--{name}"


def closest_option(typed: str, options: Sequence[str]) -> str | None:
    """The known option nearest to `typed` (`--confg` -> `--config`), in the user's dashes."""
    name = typed.split("=", 1)[0]
    bare = name.lstrip("-")
    by_bare: dict[str, list[str]] = {}
    for option in options:
        by_bare.setdefault(option.lstrip("-"), []).append(option)
    found = difflib.get_close_matches(bare, list(by_bare), n=1, cutoff=0.6)
    if not found:
        return None
    written = by_bare[found[0]]
    dashes = name[: len(name) - len(bare)]
    same = [o for o in written if o.startswith(dashes) and not o.startswith(dashes + "-")]
    return (same or sorted(written, key=len, reverse=True))[0]


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that refuses unknown arguments itself, so the innermost
    (sub)command prints its own usage and suggests the option that was probably meant."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)  # Go's flags have no abbreviations
        super().__init__(*args, **kwargs)
        self.commands_hint: frozenset[str] = frozenset()

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        words = list(sys.argv[1:] if args is None else args)
        parsed, extras = super().parse_known_args(self._go_booleans(words), namespace)
        if extras:
            self.error(self._unrecognized(extras))
        return parsed, []

    def _get_option_tuples(self, option_string: str) -> list[Any]:
        """No abbreviations at all: Python before 3.12 still expands single-dash long
        options (`-tls-cert` -> `-tls-cert-file`) with allow_abbrev=False; Go never does."""
        return []

    def _go_booleans(self, words: list[str]) -> list[str]:
        """`-watch-config=true` -> `-watch-config`; `=false` -> nothing."""
        out: list[str] = []
        for index, word in enumerate(words):
            if word == "--":
                return out + words[index:]
            option, sep, value = word.partition("=")
            action = self._option_string_actions.get(option) if sep else None
            if action is None or action.nargs != 0:
                out.append(word)
            elif value in GO_TRUE:
                out.append(option)
            elif value not in GO_FALSE:
                self.error(f"invalid boolean value {value!r} for {option} (use true or false)")
        return out

    def _unrecognized(self, extras: list[str]) -> str:
        message = f"unrecognized arguments: {' '.join(extras)}"
        options = [o for o in self._option_string_actions if o not in ("-h", "--help")]
        for word in extras:
            if word.startswith("-") and len(word) > 1:
                guess = closest_option(word, options)
                if guess:
                    return f"{message}; did you mean {guess}?"
            if word in self.commands_hint:
                return f"{message}; a command comes first: llamaswap {word} [options]"
        return message


def version_line() -> str:
    """llama-swap's `version: <v> (<commit>), built at <date>`, with what we know instead."""
    import platform

    from llamaswap import __version__

    return f"version: {__version__} (llamaswap, Python {platform.python_version()})"


class VersionAction(argparse.Action):
    """`-version`: computed only when asked (reading the package metadata takes time)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(version_line())
        parser.exit()


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """`-config` / `-config-dir` (either dash count), shared by every command that loads one."""
    parser.add_argument(*spellings("config"), metavar="FILE", help="the config file")
    parser.add_argument(
        *spellings("config-dir"),
        metavar="DIR",
        help="a directory whose *.yaml/*.yml files are merged after -config (sorted by name)",
    )
