"""`apiKeys` entries as plain keys or as objects with a name and a scope."""

from __future__ import annotations

import textwrap

import pytest

from llamaswap.config import ConfigError, parse_config
from llamaswap.config.keys import default_name

MODELS = """
models:
  qwen-7b: {cmd: "srv --port ${PORT}"}
  embed: {cmd: "srv --port ${PORT}", aliases: [emb]}
  llama: {cmd: "srv --port ${PORT}"}
"""


def parse(keys: str) -> object:
    return parse_config(textwrap.dedent(keys) + MODELS, source="test.yaml")


def test_plain_and_scoped_keys() -> None:
    config = parse(
        """
        apiKeys:
          - sk-plain
          - key: sk-team
            name: team
            models: [qwen-*, embed]
            admin: false
            concurrencyLimit: 4
        """
    )
    assert config.api_keys == ["sk-plain", "sk-team"]  # type: ignore[attr-defined]
    plain = config.key_scopes["sk-plain"]  # type: ignore[attr-defined]
    assert plain.name == default_name("sk-plain") and plain.name.startswith("key-")
    assert plain.admin and plain.allows("llama") and plain.concurrency_limit == 0
    team = config.key_scopes["sk-team"]  # type: ignore[attr-defined]
    assert (team.name, team.admin, team.concurrency_limit) == ("team", False, 4)
    assert team.allows("qwen-7b") and team.allows("embed") and team.allows("x", "embed")
    assert not team.allows("llama")
    assert "sk-team" not in team.name


@pytest.mark.parametrize(
    ("entry", "where", "says"),
    [
        ("{key: sk-1, models: []}", "apiKeys[0].models", "list of model IDs"),
        ("{key: sk-1, admin: maybe}", "apiKeys[0].admin", "true or false"),
        ("{key: sk-1, concurrencyLimit: -1}", "apiKeys[0].concurrencyLimit", ">= 0"),
        ("{key: sk-1, name: 'a b'}", "apiKeys[0].name", "letters, digits"),
        ("{key: sk-1, scope: all}", "apiKeys[0].scope", "unknown key"),
        ("{name: nokey}", "apiKeys[0]", "empty api key"),
    ],
)
def test_a_bad_entry_names_its_field(entry: str, where: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(f"apiKeys:\n  - {entry}\n")
    text = str(info.value)
    assert where in text and says in text, text


def test_two_keys_may_not_share_a_name() -> None:
    with pytest.raises(ConfigError, match=r"apiKeys\[1\]\.name.*used by entry 0"):
        parse("apiKeys:\n  - {key: sk-1, name: t}\n  - {key: sk-2, name: t}\n")
