"""Helpers for the config tests: load YAML text, or collect the problems it yields."""

from __future__ import annotations

import textwrap

import pytest

from llamaswap.config import Config, ConfigError, ConfigProblem, parse_config

# A model that needs nothing else: explicit proxy, no ${PORT}.
MODEL = "cmd: server\n    proxy: http://127.0.0.1:9000"


def load(text: str, **environ: str) -> Config:
    return parse_config(textwrap.dedent(text), source="test.yaml", environ=environ)


def problems(text: str, **environ: str) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        load(text, **environ)
    return info.value.problems


def one_problem(text: str, **environ: str) -> ConfigProblem:
    found = problems(text, **environ)
    assert len(found) == 1, "\n".join(map(str, found))
    return found[0]


def assert_problem(text: str, path: str, fragment: str, **environ: str) -> ConfigProblem:
    """Exactly one problem, at `path`, whose message contains `fragment`."""
    problem = one_problem(text, **environ)
    assert problem.path == path, str(problem)
    assert fragment in problem.message, str(problem)
    return problem
