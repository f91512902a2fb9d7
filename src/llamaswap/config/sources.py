"""Config sources: `--config FILE` and `--config-dir DIR` merged into one tree (§1.12).

The file comes first, then the top-level `*.yml`/`*.yaml` of the directory in name
order. Each file gets its own `${env.X}` pass, then trees merge: mappings
recursively, lists by concatenation, equal scalars are fine, different scalars are a
conflict, null yields to a value. Maps of named things (`models`, `peers`, groups...)
reject a name defined twice, because splitting one model over two files is
almost always a mistake. Every node keeps the file and line it came from.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llamaswap.config.envmacros import substitute_env
from llamaswap.config.errors import Mark, PathT, Problems, format_path
from llamaswap.config.yamlsrc import parse_yaml

# Maps whose children are named entities: a child defined in two sources is an error.
IDENTITY_MAPS: frozenset[PathT] = frozenset(
    {
        ("models",),
        ("groups",),
        ("profiles",),
        ("selectors",),
        ("peers",),
        ("matrix",),
        ("routing", "router", "settings", "groups"),
        ("routing", "router", "settings", "matrix"),
    }
)

YAML_SUFFIXES = (".yml", ".yaml")


@dataclass
class Document:
    """The merged tree of all sources, where each node was written, and the files read."""

    tree: dict[str, Any] = field(default_factory=dict)
    marks: dict[PathT, Mark] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)


def list_dir_sources(config_dir: str | os.PathLike[str]) -> list[Path]:
    """Top-level YAML files of a config dir, sorted by name (no recursion)."""
    directory = Path(config_dir)
    return sorted(
        (p for p in directory.iterdir() if p.suffix in YAML_SUFFIXES and p.is_file()),
        key=lambda p: p.name,
    )


def read_text_source(
    text: str, source: str, environ: Mapping[str, str], problems: Problems
) -> tuple[Any, dict[PathT, Mark]]:
    """One source's text -> (tree, marks), after its env substitution."""
    substituted = substitute_env(text, source, environ, problems)
    if substituted is None:
        return None, {}
    tree, marks = parse_yaml(substituted, source, problems)
    if tree is not None and not isinstance(tree, dict):
        problems.add((), "top-level YAML must be a mapping", mark=Mark(source, 1))
        return None, {}
    return tree, marks


def read_sources(
    path: str | os.PathLike[str] | None,
    config_dir: str | os.PathLike[str] | None,
    environ: Mapping[str, str],
    problems: Problems,
) -> Document:
    """Read, env-substitute, parse and merge every source. Problems go to `problems`."""
    files: list[Path] = []
    if path is None and config_dir is None:
        problems.add((), "at least one of --config or --config-dir must be provided")
        return Document()
    if path is not None:
        files.append(Path(path))
    if config_dir is not None:
        try:
            dir_files = list_dir_sources(config_dir)
        except OSError as exc:
            problems.add((), f"--config-dir {config_dir}: {exc.strerror or exc}")
            return Document()
        if path is not None:
            main = Path(path).resolve()
            for candidate in dir_files:
                if candidate.resolve() == main:
                    problems.add(
                        (),
                        f"--config path {path} is also present in --config-dir "
                        f"{config_dir}; remove it from one",
                    )
                    return Document()
        files.extend(dir_files)
        if not files:
            problems.add((), f"--config-dir {config_dir}: no configuration sources found")
            return Document()

    doc = Document(sources=[str(f) for f in files])
    first = True
    for file in files:
        source = str(file)
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            problems.add((), f"cannot read config: {reason}", mark=Mark(source, 1))
            continue
        tree, marks = read_text_source(text, source, environ, problems)
        if tree is None:
            continue
        if first:
            doc.tree, doc.marks, first = tree, dict(marks), False
        else:
            merge_into(doc, tree, marks, source, problems)
    return doc


def merge_into(
    doc: Document, tree: dict[str, Any], marks: dict[PathT, Mark], source: str, problems: Problems
) -> None:
    """Merge one more source's tree (and marks) into `doc`."""
    moved: dict[PathT, PathT] = {}  # subtree of the new source -> where it now lives
    _merge_map(doc.tree, tree, (), moved, marks, source, problems)
    for mark_path, mark in marks.items():
        for depth in range(len(mark_path), 0, -1):
            target = moved.get(mark_path[:depth])
            if target is not None:
                doc.marks.setdefault(target + mark_path[depth:], mark)
                break


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list):
        return "list"
    return "scalar"


def _merge_map(
    dst: dict[str, Any],
    src: dict[str, Any],
    path: PathT,
    moved: dict[PathT, PathT],
    marks: dict[PathT, Mark],
    source: str,
    problems: Problems,
) -> None:
    identity = path in IDENTITY_MAPS
    for key, value in src.items():
        child = (*path, key)
        mark = marks.get(child)
        if key not in dst:
            dst[key] = value
            moved[child] = child
            continue
        if identity:
            problems.add(
                child,
                f'duplicate {path[-1]} "{key}" found in {source} '
                "(already defined in another config source)",
                mark=mark,
            )
            continue
        current = dst[key]
        if current is None:
            dst[key] = value
            moved[child] = child
        elif value is None:
            continue
        elif isinstance(current, dict) and isinstance(value, dict):
            _merge_map(current, value, child, moved, marks, source, problems)
        elif isinstance(current, list) and isinstance(value, list):
            for index in range(len(value)):
                moved[(*child, index)] = (*child, len(current) + index)
            current.extend(value)
        elif _kind(current) != _kind(value):
            problems.add(
                child,
                f'conflict at "{format_path(child)}": incompatible YAML node kinds '
                f"({_kind(current)} vs {_kind(value)}) introduced by {source}",
                mark=mark,
            )
        elif type(current) is not type(value) or current != value:
            problems.add(
                child,
                f'conflict at "{format_path(child)}": {source} sets a different value '
                "than a previous source",
                mark=mark,
            )
