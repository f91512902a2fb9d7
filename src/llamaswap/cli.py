"""The `llamaswap` command line: one sub-command per module in `llamaswap.commands`."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from llamaswap import __version__

# name -> (module, one-line help). Each module defines `add_arguments(parser)` and
# `run(args) -> int`.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("llamaswap.commands.run", "start the proxy server"),
    "diagram": ("llamaswap.commands.diagram", "render the lifecycle specs as state diagrams"),
    "check": (
        "llamaswap.commands.check",
        "prove a config's routing policy with the property suite",
    ),
    "simulate": ("llamaswap.commands.simulate", "replay a request trace against routing policies"),
    "config": ("llamaswap.commands.config", "validate a config and print it normalised"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llamaswap",
        description="A model-swapping proxy for local LLM inference servers.",
    )
    parser.add_argument("--version", action="version", version=f"llamaswap {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        sub = commands.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(sub)
        sub.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args._module.run(args)
        sys.stdout.flush()
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `llamaswap ... | head`: the reader left, nothing is wrong
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return 0
    return code
