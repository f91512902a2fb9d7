"""llamaswap's configuration: llama-swap's YAML format, loaded into effective settings.

`load_config` / `parse_config` return a frozen `Config` whose values are final
(defaults and globals applied) or raise one `ConfigError` listing every problem with
its YAML path and line. `watch_config` and `reload_config` serve hot reload.
"""

from llamaswap.config.errors import ConfigError, ConfigProblem
from llamaswap.config.format import format_config
from llamaswap.config.loader import load_config, parse_config, reload_config
from llamaswap.config.models import (
    DEFAULT_GROUP,
    Capabilities,
    Config,
    Filters,
    GroupConfig,
    MatrixConfig,
    MatrixSet,
    ModelConfig,
    PeerConfig,
    ProfileConfig,
    ResourceProbe,
    RoutingConfig,
    SelectorConfig,
    Timeouts,
)
from llamaswap.config.shell import split_command
from llamaswap.config.watch import watch_config

__all__ = [
    "DEFAULT_GROUP",
    "Capabilities",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "Filters",
    "GroupConfig",
    "MatrixConfig",
    "MatrixSet",
    "ModelConfig",
    "PeerConfig",
    "ProfileConfig",
    "ResourceProbe",
    "RoutingConfig",
    "SelectorConfig",
    "Timeouts",
    "format_config",
    "load_config",
    "parse_config",
    "reload_config",
    "split_command",
    "watch_config",
]
