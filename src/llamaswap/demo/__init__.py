"""The built-in demo config `llamaswap run` uses when no --config is given."""

from __future__ import annotations

import os
import sys
from importlib import resources

from llamaswap.config import Config, parse_config

PYTHON_VARIABLE = "LLAMASWAP_PYTHON"


def demo_config() -> Config:
    """Three fake models served by llamaswap's own test upstream (works on any machine)."""
    text = (resources.files(__package__) / "config.yaml").read_text(encoding="utf-8")
    environ = {**os.environ, PYTHON_VARIABLE: sys.executable}
    return parse_config(text, source="<built-in demo config>", environ=environ)
