"""`llamaswap diagram`: write the state diagrams of the lifecycle specs.

By default every shipped spec is rendered to `docs/diagrams/<name>.{dot,mmd}` and, when
Graphviz is installed, `<name>.svg`. `--check` compares the committed text diagrams
with what the specs generate, so a spec edit cannot leave stale diagrams behind.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from llamaswap.fsm import Spec, SpecError, load_spec, shipped_spec_paths
from llamaswap.fsm.diagram import EXTENSIONS, TEXT_FORMATS, RendererMissing, render

DEFAULT_FORMATS = ("dot", "mermaid", "svg")


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
        help="exit 1 when the committed dot/mermaid diagrams differ from the specs",
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
    if args.check:
        return _check(specs, Path(out), args.format or list(TEXT_FORMATS))
    return _write(specs, out, args.format or list(DEFAULT_FORMATS), explicit=bool(args.format))


def _check(specs: list[Spec], out: Path, formats: list[str]) -> int:
    stale = []
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
        print(f"diagrams in {out} match {len(specs)} spec(s)")
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
