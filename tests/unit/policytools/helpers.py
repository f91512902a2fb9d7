"""Configs and a command runner shared by the policy-tools tests."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path
from types import ModuleType

from llamaswap.config import Config, parse_config

# c is in a non-exclusive group: loading it never evicts a or b (legacy llama-swap
# behaviour), so a + c and b + c run together, 28 GB on a 24 GB machine.
NON_EXCLUSIVE = """
resources:
  vram: 24
models:
  a: {cmd: "srv --port ${PORT}", resources: {vram: 16}}
  b: {cmd: "srv --port ${PORT}", resources: {vram: 16}}
  c: {cmd: "srv --port ${PORT}", resources: {vram: 12}}
groups:
  main: {members: [a, b]}
  side: {swap: true, exclusive: false, members: [c]}
"""

# The same models, every group exclusive: one model at a time, always within 24 GB.
SAFE = NON_EXCLUSIVE.replace("exclusive: false", "exclusive: true")

# embed is persistent and never evicted: big (16) can never run beside it (10) in 24.
PERSISTENT = """
resources: {vram: 24}
models:
  embed: {cmd: "srv --port ${PORT}", resources: {vram: 10}}
  big: {cmd: "srv --port ${PORT}", resources: {vram: 16}}
  small: {cmd: "srv --port ${PORT}", resources: {vram: 8}}
groups:
  keep: {persistent: true, exclusive: false, members: [embed]}
"""

MATRIX = """
resources: {vram: 24}
models:
  a: {cmd: "srv --port ${PORT}", resources: {vram: 12}}
  b: {cmd: "srv --port ${PORT}", resources: {vram: 12}}
  c: {cmd: "srv --port ${PORT}", resources: {vram: 14}}
matrix:
  sets:
    pair: "a & b"
    wide: "a & c"
"""

# Three models, no groups: the implicit (default) group runs one at a time.
THREE = """
models:
  A: {cmd: "srv --port ${PORT}"}
  B: {cmd: "srv --port ${PORT}"}
  C: {cmd: "srv --port ${PORT}"}
"""


def config(text: str) -> Config:
    return parse_config(textwrap.dedent(text), source="test.yaml")


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def run_command(module: ModuleType, argv: list[str]) -> int:
    """Parse `argv` with the command's own arguments and run it (as `llamaswap X` does)."""
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    code: int = module.run(parser.parse_args(argv))
    return code


def twenty_models(default_need: int) -> str:
    """20 models in four kinds of group; safe when `default_need` <= 28 (48 GB machine).

    misc models (default group, exclusive) keep the persistent embed pair (4 GB) and
    then let the four small non-exclusive models (16 GB) load beside them.
    """
    needs = {f"big{i}": 24 for i in range(8)}
    needs |= {f"small{i}": 4 for i in range(4)}
    needs |= {"embed0": 2, "embed1": 2}
    needs |= {f"misc{i}": default_need for i in range(6)}
    lines = ["resources: {vram: 48}", "models:"]
    for index, (model, need) in enumerate(needs.items()):
        ttl = ", ttl: 300" if index % 3 == 0 else ""
        lines.append(
            f'  {model}: {{cmd: "srv --port ${{PORT}}", resources: {{vram: {need}}}{ttl}}}'
        )
    lines += [
        "groups:",
        "  big: {members: [" + ", ".join(f"big{i}" for i in range(8)) + "]}",
        "  small: {swap: false, exclusive: false, members: [small0, small1, small2, small3]}",
        "  embed: {swap: false, exclusive: false, persistent: true, members: [embed0, embed1]}",
    ]
    return "\n".join(lines) + "\n"
