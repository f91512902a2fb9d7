"""Config problems: where a mistake is (YAML path, file, line) and what it is.

Loading never stops at the first mistake. Every stage adds what it finds to one
`Problems` collector, and `ConfigError` reports them all at once, so a user fixes a
broken config in one edit instead of one run per mistake.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

# A location inside the YAML tree: mapping keys and list indices, outermost first.
PathT = tuple[str | int, ...]


class Mark(NamedTuple):
    """Where a YAML node was written: which file, which 1-based line."""

    source: str
    line: int


def closest_key(word: str, known: Iterable[str]) -> str | None:
    """The known key `word` is a near miss of (`healthCheckTimout` -> `healthCheckTimeout`)."""
    found = difflib.get_close_matches(word, list(known), n=1, cutoff=0.75)
    return found[0] if found else None


def format_path(path: PathT) -> str:
    """`("models", "qwen", "aliases", 1)` -> `models.qwen.aliases[1]`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass(frozen=True)
class ConfigProblem:
    """One mistake. `path` is empty for whole-file problems (YAML syntax, unreadable file)."""

    path: str
    message: str
    line: int | None = None
    source: str | None = None

    def __str__(self) -> str:
        where = self.source or "<config>"
        if self.line is not None:
            where += f":{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(Exception):
    """A config that cannot be used; `problems` lists every reason, one line each in str().

    `warnings` carries the non-fatal findings of the same load (unknown keys...), which
    often explain an error.
    """

    def __init__(
        self, problems: list[ConfigProblem], warnings: list[ConfigProblem] | None = None
    ) -> None:
        self.problems = list(problems)
        self.warnings = list(warnings or [])
        super().__init__("\n".join(str(p) for p in self.problems))


class Problems:
    """Collects errors and warnings while a config is loaded.

    `marks` maps YAML paths to where they were written; a problem on a path with no
    mark of its own (a missing key, a derived value) takes the nearest ancestor's, so
    `models.qwen.cmd: cmd is required` still points at the `qwen:` line.
    """

    def __init__(self, marks: dict[PathT, Mark] | None = None, source: str | None = None) -> None:
        self.marks: dict[PathT, Mark] = marks if marks is not None else {}
        self.source = source
        self.errors: list[ConfigProblem] = []
        self.warnings: list[ConfigProblem] = []
        # path of a known key -> an unknown key beside it that is a near miss of it
        self.typos: dict[str, ConfigProblem] = {}

    def locate(self, path: PathT) -> Mark | None:
        for depth in range(len(path), -1, -1):
            mark = self.marks.get(path[:depth])
            if mark is not None:
                return mark
        return None

    def _problem(self, path: PathT, message: str, mark: Mark | None) -> ConfigProblem:
        mark = mark or self.locate(path)
        if mark is None:
            return ConfigProblem(format_path(path), message, None, self.source)
        return ConfigProblem(format_path(path), message, mark.line, mark.source)

    def add(self, path: PathT, message: str, *, mark: Mark | None = None) -> None:
        problem = self._problem(path, message, mark)
        if problem not in self.errors:
            self.errors.append(problem)

    def warn(self, path: PathT, message: str, *, mark: Mark | None = None) -> None:
        problem = self._problem(path, message, mark)
        if problem not in self.warnings:
            self.warnings.append(problem)

    def unknown_key(self, path: PathT, known: Iterable[str]) -> None:
        """Warn that the last key of `path` is ignored, naming the known key it is a near
        miss of; an error about that known key (`cmd is required`) will point back here."""
        key = str(path[-1])
        match = closest_key(key, known)
        self.warn(
            path, f"unknown key '{key}' ignored" + (f"; did you mean {match}?" if match else "")
        )
        if match:
            self.typos[format_path((*path[:-1], match))] = self._problem(path, key, None)

    def _explained(self, problem: ConfigProblem) -> ConfigProblem:
        typo = self.typos.get(problem.path)
        if typo is None:
            return problem
        where = f" on line {typo.line}" if typo.line is not None else ""
        hint = f"; '{typo.message}'{where} may be a misspelling of it"
        return dataclasses.replace(problem, message=problem.message + hint)

    def child(self) -> Problems:
        """A separate collector over the same marks (for checks whose errors are demoted)."""
        return Problems(self.marks, self.source)

    def __bool__(self) -> bool:
        return bool(self.errors)

    def sorted_warnings(self) -> list[ConfigProblem]:
        return _in_file_order(self.warnings)

    def error(self) -> ConfigError:
        errors = [self._explained(p) for p in self.errors]
        return ConfigError(_in_file_order(errors), _in_file_order(self.warnings))

    def raise_if_any(self) -> None:
        if self.errors:
            raise self.error()


def _in_file_order(problems: list[ConfigProblem]) -> list[ConfigProblem]:
    """Sort by file (in the order files first appear) then line; stable otherwise."""
    files: dict[str | None, int] = {}
    for problem in problems:
        files.setdefault(problem.source, len(files))
    return sorted(problems, key=lambda p: (files[p.source], p.line or 0))
