"""The normalised config as YAML, for `llamaswap config check` and `run --validate`.

It shows what llamaswap will actually do: effective values after macros, defaults
and globals, allocated ports, resolved aliases and the expanded routing. Keys are
the camelCase names of the `Config` model. It is a report, not a config file to load.
"""

from __future__ import annotations

from typing import Any

import yaml

from llamaswap.config.models import Config


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings, so commands read as they were written."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def format_config(config: Config) -> str:
    data: dict[str, Any] = config.model_dump(mode="json", by_alias=True, exclude={"warnings"})
    header = "# llamaswap normalised config"
    if config.sources:
        header += " from " + ", ".join(config.sources)
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100, indent=2)
    return f"{header}\n{body}"
