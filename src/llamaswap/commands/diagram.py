"""`llamaswap diagram`: write what is generated from the lifecycle specs.

By default every shipped spec is rendered to `docs/diagrams/<name>.{dot,mmd,md}` (the
diagrams and the state table) and, when Graphviz is installed, `<name>.svg`; and the
typed names of the shipped specs are written to `src/llamaswap/fsm/names.py`. `--check`
compares the committed text files with what the specs generate, so a spec edit cannot
leave stale diagrams, tables or enums behind.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from llamaswap.fsm import Spec, SpecError, load_spec, shipped_spec_paths
from llamaswap.fsm.codegen import names_module_path, names_source
from llamaswap.fsm.diagram import EXTENSIONS, TEXT_FORMATS, RendererMissing, render

DEFAULT_FORMATS = ("dot", "mermaid", "table", "svg")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--spec",
        action="append",
        metavar="FILE",
        help="a *.fsm.yaml file to render (repeatable; default: every shipped spec)",
    )
    parser.add_argument(
        "--format",
        action="append",
        choices=sorted(EXTENSIONS),
        help="output format (repeatable; default: dot, mermaid and svg when Graphviz exists)",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="output directory, or '-' for stdout (default: docs/diagrams)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 when the committed diagrams, tables or names differ from the specs",
    )


def default_out_dir() -> Path:
    """`docs/diagrams` of the source tree the specs come from, else of the cwd."""
    specs = shipped_spec_paths()
    if specs:
        repo_docs = specs[0].resolve().parent.parent / "docs" / "diagrams"
        if repo_docs.is_dir():
            return repo_docs
    return Path("docs/diagrams")


def run(args: argparse.Namespace) -> int:
    try:
        specs = [load_spec(p) for p in (args.spec or shipped_spec_paths())]
    except SpecError as exc:
        print(exc, file=sys.stderr)
        return 2
    out = args.out or str(default_out_dir())
    shipped = not args.spec  # the generated names follow the shipped specs only
    if args.check:
        return _check(specs, Path(out), args.format or list(TEXT_FORMATS), names=shipped)
    if shipped and out != "-":
        _write_names(specs)
    return _write(specs, out, args.format or list(DEFAULT_FORMATS), explicit=bool(args.format))


def _write_names(specs: list[Spec]) -> None:
    path = names_module_path()
    source = names_source(specs)
    if not path.is_file() or path.read_text(encoding="utf-8") != source:
        path.write_text(source, encoding="utf-8")
        print(f"wrote {path}", file=sys.stderr)


def _check(specs: list[Spec], out: Path, formats: list[str], *, names: bool) -> int:
    stale = []
    if names:
        path = names_module_path()
        if not path.is_file() or path.read_text(encoding="utf-8") != names_source(specs):
            stale.append(path)
    for spec in specs:
        for fmt in formats:
            if fmt not in TEXT_FORMATS:
                continue  # images depend on the local Graphviz version: not compared
            path = out / f"{spec.name}.{EXTENSIONS[fmt]}"
            if not path.is_file() or path.read_bytes() != render(spec, fmt):
                stale.append(path)
    for path in stale:
        print(f"out of date: {path} (run `llamaswap diagram`)", file=sys.stderr)
    if not stale:
        print(f"diagrams in {out} and the generated names match {len(specs)} spec(s)")
    return 1 if stale else 0


def _write(specs: list[Spec], out: str, formats: list[str], *, explicit: bool) -> int:
    written, missing = 0, None
    for spec in specs:
        for fmt in formats:
            try:
                data = render(spec, fmt)
            except RendererMissing as exc:
                missing = str(exc)
                continue
            if out == "-":
                sys.stdout.buffer.write(data)
                sys.stdout.flush()
            else:
                path = Path(out) / f"{spec.name}.{EXTENSIONS[fmt]}"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                print(f"wrote {path}", file=sys.stderr)
            written += 1
    if missing:
        print(f"notice: skipped images: {missing}", file=sys.stderr)
    return 1 if explicit and written == 0 else 0
