"""Load a config for a command, printing its problems the one way every command does.

Warnings, then `invalid config (N problems):` and one `<file>:<line>: <path>: <message>`
line each: `llamaswap run`, `config check`, `check` and `simulate` all use this.
"""

from __future__ import annotations

from typing import Any, TextIO

from .errors import ConfigError
from .loader import load_config
from .models import Config


def load_or_report(path: str | None, config_dir: str | None, err: TextIO) -> Config | None:
    """The config, or None after printing every problem (and warning) to `err`."""
    try:
        config = load_config(path, config_dir=config_dir)
    except ConfigError as exc:
        for problem in exc.warnings:
            print(f"warning: {problem}", file=err)
        count = len(exc.problems)
        print(f"invalid config ({count} problem{'s' if count != 1 else ''}):", file=err)
        for problem in exc.problems:
            print(problem, file=err)
        return None
    for warning in config.warnings:
        print(f"warning: {warning}", file=err)
    return config


def load_from_args(args: Any, command: str, err: TextIO) -> Config | None:
    """For a command with --config/--config-dir: the config, or None after saying why."""
    if args.config is None and args.config_dir is None:
        print(f"llamaswap {command}: give --config FILE and/or --config-dir DIR", file=err)
        return None
    return load_or_report(args.config, args.config_dir, err)
