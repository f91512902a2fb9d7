"""`llamaswap config check`: validate a config and print it normalised.

Exit status 0 with the normalised config on stdout, or 2 with every problem on
stderr (one `<file>:<line>: <path>: <message>` line each). Warnings always go to
stderr. `llamaswap run --validate` is meant to call `check()` too, so both commands
print exactly the same thing.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from llamaswap.config import format_config
from llamaswap.config.report import load_or_report

from .parsing import add_source_arguments

__all__ = ["add_arguments", "add_source_arguments", "check", "run"]

EXIT_INVALID = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="config_action", metavar="ACTION", required=True)
    check_parser = actions.add_parser(
        "check",
        help="validate a config and print it normalised",
        description="Validate a config and print the effective settings llamaswap would use.",
    )
    add_source_arguments(check_parser)


def run(args: argparse.Namespace) -> int:
    if args.config is None and args.config_dir is None:
        print("llamaswap config check: give --config FILE and/or --config-dir DIR", file=sys.stderr)
        return EXIT_INVALID
    return check(args.config, args.config_dir)


def check(
    path: str | None,
    config_dir: str | None = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Load, print the normalised config (or the problems); returns the exit status."""
    out = out or sys.stdout
    config = load_or_report(path, config_dir, err or sys.stderr)
    if config is None:
        return EXIT_INVALID
    out.write(format_config(config))
    return 0
