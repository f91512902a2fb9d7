"""§1.1 env macros, the error format, line numbers, and typed-decode problems."""

from __future__ import annotations

import pytest

from llamaswap.config import ConfigError, ConfigProblem, parse_config
from tests.unit.config.helpers import assert_problem, load, problems


def test_env_macros_are_replaced_before_yaml() -> None:
    config = load(
        """
        apiKeys: [${env.KEYS}]
        models:
          m:
            cmd: "${env.BIN} --model ${env.HOME}/x.gguf"
            proxy: "http://127.0.0.1:9000"
        """,
        KEYS="k1, k2",
        BIN="/opt/srv",
        HOME="/home/u",
    )
    assert config.api_keys == ["k1", "k2"]  # the value supplied YAML syntax (a flow list)
    assert config.models["m"].cmd == "/opt/srv --model /home/u/x.gguf"


def test_env_macro_in_a_comment_may_be_unset() -> None:
    config = load(
        """
        # the key used to be ${env.OLD_KEY}
        apiKeys: ["${env.KEY}"]
        """,
        KEY="k",
    )
    assert config.api_keys == ["k"]


@pytest.mark.parametrize(
    ("value", "double_quoted", "plain"),
    [
        ('a"b', 'a"b', 'a\\"b'),
        ("c:\\dir", "c:\\dir", "c:\\\\dir"),
    ],
)
def test_env_values_are_escaped_for_double_quotes(
    value: str, double_quoted: str, plain: str
) -> None:
    config = load(
        """
        models:
          m:
            cmd: srv
            proxy: "http://127.0.0.1:9000"
            name: "${env.V}"
            description: ${env.V}
        """,
        V=value,
    )
    assert config.models["m"].name == double_quoted
    assert config.models["m"].description == plain  # the escapes stay literal [quirk]


def test_unset_env_variables_are_all_reported_with_their_paths() -> None:
    found = problems(
        """
        apiKeys: ["${env.A}"]
        models:
          m:
            cmd: "srv ${env.B}"
            proxy: "http://127.0.0.1:9000"
        """
    )
    assert [(p.path, p.message, p.line) for p in found] == [
        ("apiKeys[0]", "environment variable 'A' is not set", 2),
        ("models.m.cmd", "environment variable 'B' is not set", 5),
    ]


def test_env_value_with_newline_is_refused() -> None:
    assert_problem(
        'apiKeys: ["${env.A}"]', "apiKeys[0]", "contains newlines or null bytes", A="x\ny"
    )


def test_env_error_in_invalid_yaml_still_names_the_variable() -> None:
    [problem] = problems("a: [${env.MISSING}\nb: 1\n")
    assert problem.message == "environment variable 'MISSING' is not set"
    assert problem.line == 1


def test_problem_format() -> None:
    assert str(ConfigProblem("models.m.ttl", "bad", 7, "c.yaml")) == "c.yaml:7: models.m.ttl: bad"
    assert str(ConfigProblem("models.m.ttl", "bad", None, "c.yaml")) == "c.yaml: models.m.ttl: bad"
    assert str(ConfigProblem("", "invalid YAML", 3, "c.yaml")) == "c.yaml:3: invalid YAML"


def test_config_error_lists_every_problem_one_per_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(
            "globalTTL: -1\nunloadTimeout: -1\nstartPort: 0\n", source="c.yaml", environ={}
        )
    assert str(info.value).splitlines() == [
        "c.yaml:1: globalTTL: globalTTL must be >= 0",
        "c.yaml:2: unloadTimeout: unloadTimeout must be >= 0",
        "c.yaml:3: startPort: startPort must be greater than 1",
    ]


def test_missing_key_problem_points_at_the_parent_line() -> None:
    problem = assert_problem(
        """
        peers:
          p:
            models: [a]
        """,
        "peers.p.proxy",
        "proxy is required",
    )
    assert problem.line == 3


@pytest.mark.parametrize(
    ("yaml_text", "path", "fragment", "line"),
    [
        ("healthCheckTimeout: soon\n", "healthCheckTimeout", "must be an integer, got 'soon'", 1),
        ("globalTTL: 1.5\n", "globalTTL", "must be a whole number", 1),
        ("startPort: true\n", "startPort", "must be a number, not true/false", 1),
        ("sendLoadingState: maybe\n", "sendLoadingState", "must be true or false", 1),
        ("apiKeys: {a: 1}\n", "apiKeys", "must be a list, got a mapping", 1),
        ("apiKeys:\n  - [nested]\n", "apiKeys[0]", "must be a string, got a list", 2),
        ("hooks: [1]\n", "hooks", "must be a mapping, got a list", 1),
        (
            "models:\n  m:\n    cmd: srv\n    proxy: http://h:1\n    ttl: [1]\n",
            "models.m.ttl",
            "must be an integer, got a list",
            5,
        ),
        (
            "models:\n  m:\n    cmd: srv\n    proxy: http://h:1\n    timeouts:\n      connect: x\n",
            "models.m.timeouts.connect",
            "must be a number",
            6,
        ),
        ("models: [a]\n", "models", "must be a mapping", 1),
        ("models:\n  m: 3\n", "models.m", "a model must be a mapping", 2),
        ("a: 1\na: 2\n", "a", 'mapping key "a" already defined at line 1', 2),
        ("a: [1\n", "", "invalid YAML", 2),
        ("- 1\n- 2\n", "", "top-level YAML must be a mapping", 1),
    ],
)
def test_type_problems_have_path_and_line(
    yaml_text: str, path: str, fragment: str, line: int
) -> None:
    problem = assert_problem(yaml_text, path, fragment)
    assert problem.line == line
    assert problem.source == "test.yaml"


def test_scalars_decode_into_string_fields_like_yaml_v3() -> None:
    config = load(
        """
        apiKeys: [12345, true]
        models:
          "1234": {cmd: srv, proxy: "http://h:1", name: 1.5}
        """
    )
    assert config.api_keys == ["12345", "true"]
    assert config.models["1234"].name == "1.5"


def test_yaml_12_scalars() -> None:
    config = load(
        """
        models:
          m:
            cmd: srv
            proxy: "http://h:1"
            metadata: {a: yes, b: on, c: 2024-01-02, d: True, e: ~, f: 0x10}
        """
    )
    assert config.models["m"].metadata == {
        "a": "yes",
        "b": "on",
        "c": "2024-01-02",
        "d": True,
        "e": None,
        "f": 16,
    }


def test_merge_keys_and_anchors() -> None:
    config = load(
        """
        x-defaults: &defaults
          proxy: "http://h:1"
          ttl: 60
        models:
          a:
            <<: *defaults
            cmd: srv-a
          b:
            <<: *defaults
            cmd: srv-b
            ttl: 5
        """
    )
    assert (config.models["a"].ttl, config.models["b"].ttl) == (60, 5)
    assert config.models["b"].proxy == "http://h:1"


def test_unknown_top_level_keys_are_ignored_silently() -> None:
    config = load("x-anchors: {a: 1}\nsomethingNew: [1, 2]\n")
    assert config.warnings == []


def test_unknown_model_keys_are_warnings_naming_them() -> None:
    config = load(
        """
        models:
          m:
            cmd: srv
            proxy: "http://h:1"
            cmdstop: oops
            filters: {stripParms: a}
        """
    )
    assert config.warnings == [
        "test.yaml:6: models.m.cmdstop: unknown key 'cmdstop' ignored; did you mean cmdStop?",
        "test.yaml:7: models.m.filters.stripParms: unknown key 'stripParms' ignored; "
        "did you mean stripParams?",
    ]


def test_empty_config_is_valid() -> None:
    config = load("")
    assert config.models == {}
    assert list(config.routing.groups) == ["(default)"]
