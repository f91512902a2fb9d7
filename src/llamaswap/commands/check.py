"""`llamaswap check`: prove a config's routing policy with the property suite.

Builds the scheduler and policy the server would, starts no process, and explores
them (see `llamaswap.policytools.checker`). Exit 0 when no problem is found, 1 with
a report of every problem, 2 when the config itself is invalid.
"""

from __future__ import annotations

import argparse
import json
import sys

from llamaswap.config import Config
from llamaswap.config.report import load_from_args
from llamaswap.policytools.checker import check_config
from llamaswap.policytools.exploration import DEFAULT_EXAMPLES
from llamaswap.policytools.report import render_text, to_json

from .config import add_source_arguments

EXIT_SAFE, EXIT_VIOLATION, EXIT_INVALID = 0, 1, 2


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_arguments(parser)
    parser.add_argument(
        "--examples",
        type=_positive,
        default=DEFAULT_EXAMPLES,
        metavar="N",
        help=f"Hypothesis examples to explore (default {DEFAULT_EXAMPLES})",
    )
    parser.add_argument(
        "--seed",
        type=int,
        metavar="S",
        help="explore with this seed (default: derandomized, the same run every time)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def note_declared_figures(config: Config, command: str) -> None:
    """Probed resources are measured by the server only: say what offline tools judge."""
    if config.probes:
        names = ", ".join(sorted(config.probes))
        print(
            f"note: {command} judges {names} on the declared figures; the server also "
            "measures them with their probes",
            file=sys.stderr,
        )


def run(args: argparse.Namespace) -> int:
    config = load_from_args(args, "check", sys.stderr)
    if config is None:
        return EXIT_INVALID
    source = args.config or args.config_dir
    note_declared_figures(config, "check")
    report = check_config(config, examples=args.examples, seed=args.seed, source=source)
    if args.json:
        print(json.dumps(to_json(report), indent=2))
    else:
        sys.stdout.write(render_text(report))
    return EXIT_SAFE if report.ok else EXIT_VIOLATION
