"""Lifecycle state machines generated from `spec/*.fsm.yaml`.

`load_spec` validates a spec file, `build_machine` turns it into a strict
python-statemachine class, and the ready-made classes for the shipped specs are
`ProcessMachine` and `RouterMachine`. Their typed names (`ProcessState`, ...) are in
the generated `llamaswap.fsm.names`.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

from statemachine import StateMachine
from statemachine.exceptions import TransitionNotAllowed

from .builder import build_machine, class_name
from .spec import Spec, SpecError, load_spec, parse_spec

__all__ = [
    "ProcessMachine",
    "RouterMachine",
    "Spec",
    "SpecError",
    "TransitionNotAllowed",
    "build_machine",
    "class_name",
    "load_spec",
    "parse_spec",
    "shipped_spec",
    "shipped_spec_paths",
]


def shipped_spec_paths() -> list[Path]:
    """The specs that ship with the package (the repository's `spec/` directory)."""
    folder = Path(str(resources.files("llamaswap") / "specs"))
    return sorted(folder.glob("*.fsm.yaml"))


@cache
def shipped_spec(name: str) -> Spec:
    """The validated shipped spec called `name` (process, router)."""
    for path in shipped_spec_paths():
        if path.name == f"{name}.fsm.yaml":
            return load_spec(path)
    raise FileNotFoundError(f"no shipped spec named {name}.fsm.yaml")


ProcessMachine: type[StateMachine] = build_machine(shipped_spec("process"))
RouterMachine: type[StateMachine] = build_machine(shipped_spec("router"))
