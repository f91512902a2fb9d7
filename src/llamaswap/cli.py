"""The `llamaswap` command line: llama-swap's flags, or one sub-command per module.

`llamaswap -config F -listen :8080` is llama-swap's command line and runs the server as
`llamaswap run` does; `llamaswap COMMAND ...` runs a module of `llamaswap.commands`.
Arguments are parsed before anything heavy is imported, and only the chosen command's
module is imported, so `llamaswap --version` and usage errors answer at once.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from llamaswap.commands import run as run_command
from llamaswap.commands.parsing import Parser

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

USAGE = """llamaswap [-config FILE] [-config-dir DIR] [-listen ADDR] [-watch-config]
                 [-tls-cert-file FILE -tls-key-file FILE] [-version] [--validate] ...
       llamaswap COMMAND [options]"""


def top_parser() -> Parser:
    """llama-swap's command line: every `run` option; no sub-command."""
    epilog = "commands (llamaswap COMMAND -h for their options):\n" + "\n".join(
        f"  {name:<10} {help_text}" for name, (_, help_text) in COMMANDS.items()
    )
    parser = Parser(
        prog="llamaswap",
        usage=USAGE,
        description="A model-swapping proxy for local LLM inference servers. With no "
        "command it runs the proxy: llama-swap's flags work unchanged (-flag or --flag).",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run_command.add_arguments(parser)
    parser.set_defaults(_module=run_command)
    parser.commands_hint = frozenset(COMMANDS)
    return parser


def command_parser(name: str) -> Parser:
    """The parser of one sub-command; imports that command's module only."""
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = Parser(prog=f"llamaswap {name}", description=help_text)
    module.add_arguments(parser)
    parser.set_defaults(_module=module)
    return parser


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Arguments of either form; exits 2 with usage on a mistake, 0 after -version/-h."""
    if argv and argv[0] in COMMANDS:
        return command_parser(argv[0]).parse_args(argv[1:])
    return top_parser().parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(list(sys.argv[1:] if argv is None else argv))
    try:
        code: int = args._module.run(args)
        sys.stdout.flush()
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `llamaswap ... | head`: the reader left, nothing is wrong
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return 0
    return code
