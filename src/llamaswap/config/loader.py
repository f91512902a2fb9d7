"""The loading pipeline: sources -> env macros -> YAML -> macros/ports -> typed, effective Config.

Every stage reports into one `Problems` collector and the pipeline goes as far as it
can, so a `ConfigError` lists every mistake it could find, each with its path and line.
A stage stops the pipeline only when later stages would have nothing sound to work on
(unreadable files, YAML syntax errors).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from llamaswap.config.build import build_config
from llamaswap.config.errors import ConfigError, Problems, closest_key
from llamaswap.config.expansion import expand_document
from llamaswap.config.models import Config
from llamaswap.config.schema import TOP_LEVEL_KEYS
from llamaswap.config.sources import Document, read_sources, read_text_source

StrPath = str | os.PathLike[str]


def _warn_top_level_typos(tree: dict[str, Any], problems: Problems) -> None:
    """Unknown top-level keys are ignored without a word, as llama-swap ignores them
    (they often hold YAML anchors); one that is a near miss of a known key is a typo,
    which would silently fall back to a default, so it gets a warning. `x-` keys are
    extension fields by convention (`x-models: &defaults`), never typos."""
    for key in tree:
        if not isinstance(key, str) or key in TOP_LEVEL_KEYS or key.startswith("x-"):
            continue
        if closest_key(key, TOP_LEVEL_KEYS):
            problems.unknown_key((key,), TOP_LEVEL_KEYS)


def _finish(doc: Document, problems: Problems) -> Config:
    problems.raise_if_any()  # unreadable or unparsable sources: nothing sound to check
    problems.marks = doc.marks
    _warn_top_level_typos(doc.tree, problems)
    expanded = expand_document(doc.tree, problems)
    return build_config(expanded, problems, doc.sources)


def parse_config(
    text: str, *, source: str = "<string>", environ: Mapping[str, str] | None = None
) -> Config:
    """Load a config from YAML text. Raises `ConfigError` listing every problem."""
    problems = Problems(source=source)
    env = os.environ if environ is None else environ
    tree, marks = read_text_source(text, source, env, problems)
    return _finish(Document(tree or {}, marks, [source]), problems)


def load_config(
    path: StrPath | None,
    *,
    config_dir: StrPath | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Load `--config` and/or `--config-dir` (§1.12). Raises `ConfigError`."""
    problems = Problems(source=str(path) if path is not None else None)
    env = os.environ if environ is None else environ
    doc = read_sources(path, config_dir, env, problems)
    return _finish(doc, problems)


def reload_config(
    path: StrPath | None,
    config_dir: StrPath | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config | ConfigError:
    """Load again for SIGHUP or a watched change: the new Config, or why it was refused.

    Never raises a `ConfigError`: the caller keeps the running config and logs it.
    """
    try:
        return load_config(path, config_dir=config_dir, environ=environ)
    except ConfigError as exc:
        return exc
