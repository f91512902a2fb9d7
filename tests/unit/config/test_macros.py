"""§1.3 macros and §1.4 ${PORT} allocation: input YAML -> value, or problem at a path."""

from __future__ import annotations

from typing import Any

import pytest

from llamaswap.config.macros import go_format
from tests.unit.config.helpers import assert_problem, load, problems


def model_field(text: str, model: str, field: str) -> Any:
    return getattr(load(text).models[model], field)


@pytest.mark.parametrize(
    ("yaml_text", "field", "expected"),
    [
        pytest.param(
            """
            macros: {srv: /opt/llama-server}
            models:
              m: {cmd: "${srv} -m x", proxy: "http://h:1"}
            """,
            "cmd",
            "/opt/llama-server -m x",
            id="global-macro-in-cmd",
        ),
        pytest.param(
            """
            macros:
              base: /models
              path: "${base}/qwen"
              full: "--model ${path}.gguf"
            models:
              m: {cmd: "srv ${full}", proxy: "http://h:1"}
            """,
            "cmd",
            "srv --model /models/qwen.gguf",
            id="macro-in-macro-chain",
        ),
        pytest.param(
            """
            macros: {who: "${MODEL_ID}-x"}
            models:
              m: {cmd: "srv ${who}", proxy: "http://h:1"}
            """,
            "cmd",
            "srv m-x",
            id="global-macro-uses-MODEL_ID",
        ),
        pytest.param(
            """
            macros: {tag: g, msg: "v-${tag}"}
            models:
              m:
                macros: {tag: m}
                cmd: srv
                proxy: "http://h:1"
                description: "${msg}"
            """,
            "description",
            "v-m",
            id="model-macro-overrides-global-in-place",
        ),
        pytest.param(
            """
            macros: {ctx: 4096}
            models:
              m:
                macros: {ctx: 16384, args: "--ctx ${ctx}"}
                cmd: "srv ${args}"
                proxy: "http://h:1"
            """,
            "cmd",
            "srv --ctx 16384",
            id="model-only-macro-uses-overridden-global",
        ),
        pytest.param(
            """
            macros: {t: 0.7, big: 1000000.0, one: 1.0, on: true, n: 42}
            models:
              m: {cmd: "srv ${t} ${big} ${one} ${on} ${n}", proxy: "http://h:1"}
            """,
            "cmd",
            "srv 0.7 1e+06 1 true 42",
            id="go-%v-formatting",
        ),
        pytest.param(
            """
            macros: {T: 30}
            models:
              m: {cmd: srv, proxy: "http://h:1", ttl: "${T}"}
            """,
            "ttl",
            30,
            id="exact-macro-keeps-int-type",
        ),
        pytest.param(
            """
            models:
              m:
                cmd: srv
                proxy: "http://h:1"
                cmdStop: "kill ${PID}"
            """,
            "cmd_stop",
            "kill ${PID}",
            id="PID-stays-in-cmdStop",
        ),
        pytest.param(
            """
            macros: {stop: "kill -TERM ${PID}"}
            models:
              m: {cmd: srv, proxy: "http://h:1", cmdStop: "${stop}"}
            """,
            "cmd_stop",
            "kill -TERM ${PID}",
            id="PID-introduced-by-macro-in-cmdStop",
        ),
        pytest.param(
            """
            macros: {x: 1}
            models:
              m:
                cmd: srv
                proxy: "http://h:1"
                metadata:
                  "${x}": "${x}"
            """,
            "metadata",
            {"${x}": 1},
            id="map-keys-are-not-substituted",
        ),
        pytest.param(
            """
            macros: {t: 0.7, b: false, n: 3}
            models:
              m:
                cmd: srv
                proxy: "http://h:1"
                metadata:
                  float: ${t}
                  bool: ${b}
                  text: "t=${t} b=${b}"
                  nested:
                    list: ["${n}", "${MODEL_ID}", 2]
            """,
            "metadata",
            {
                "float": 0.7,
                "bool": False,
                "text": "t=0.7 b=false",
                "nested": {"list": [3, "m", 2]},
            },
            id="typed-values-at-any-depth",
        ),
        pytest.param(
            """
            models:
              m:
                cmd: |
                  # a comment
                  srv ${MODEL_ID}
                    # indented comment
                  --flag # kept
                proxy: "http://h:1"
            """,
            "cmd",
            "srv m\n--flag # kept\n",
            id="whole-line-comments-removed-from-cmd",
        ),
    ],
)
def test_macro_expansion(yaml_text: str, field: str, expected: Any) -> None:
    assert model_field(yaml_text, "m", field) == expected


def test_model_macros_do_not_leak_into_other_models() -> None:
    config = load(
        """
        macros: {tag: g, msg: "v-${tag}"}
        models:
          a: {macros: {tag: a}, cmd: srv, proxy: "http://h:1", description: "${msg}"}
          b: {cmd: srv, proxy: "http://h:1", description: "${msg}"}
        """
    )
    assert config.models["a"].description == "v-a"
    assert config.models["b"].description == "v-g"


def test_start_port_may_come_from_a_macro() -> None:
    config = load(
        """
        macros: {base: 9100}
        startPort: ${base}
        models:
          m: {cmd: "srv --port ${PORT}"}
        """
    )
    assert config.start_port == 9100
    assert config.models["m"].port == 9100


def test_global_macros_reach_top_level_sections() -> None:
    config = load(
        """
        macros: {key: sk-1, host: 10.0.0.2}
        apiKeys: ["${key}"]
        peers:
          p: {proxy: "http://${host}:8080", models: [a], apiKey: "${key}"}
        """
    )
    assert config.api_keys == ["sk-1"]
    assert config.peers["p"].proxy == "http://10.0.0.2:8080"
    assert config.peers["p"].api_key == "sk-1"


@pytest.mark.parametrize(
    ("yaml_text", "path", "fragment"),
    [
        pytest.param(
            """
            macros:
              full: "${later}/x"
              later: /opt
            models:
              m: {cmd: "srv ${full}", proxy: "http://h:1"}
            """,
            "models.m.cmd",
            "unknown macro '${later}'",
            id="forward-reference",
        ),
        pytest.param(
            """
            models:
              m: {cmd: "srv ${nope}", proxy: "http://h:1"}
            """,
            "models.m.cmd",
            "unknown macro '${nope}'",
            id="undeclared-in-cmd",
        ),
        pytest.param(
            """
            models:
              m:
                cmd: srv
                proxy: "http://h:1"
                metadata: {a: {b: [1, "${nope}"]}}
            """,
            "models.m.metadata.a.b[1]",
            "unknown macro '${nope}'",
            id="undeclared-deep-in-metadata",
        ),
        pytest.param(
            """
            macros: {tag: g}
            models:
              m:
                macros: {only: x}
                cmd: srv
                proxy: "http://h:1"
            other_model_free_top: 1
            apiKeys: ["${only}"]
            """,
            "apiKeys[0]",
            "unknown macro '${only}'",
            id="model-macro-invisible-at-top-level",
        ),
        pytest.param(
            """
            apiKeys: ["k-${MODEL_ID}"]
            """,
            "apiKeys[0]",
            "unknown macro '${MODEL_ID}'",
            id="MODEL_ID-unknown-at-top-level",
        ),
        pytest.param(
            """
            models:
              m: {cmd: "srv --pid ${PID}", proxy: "http://h:1"}
            """,
            "models.m.cmd",
            "unknown macro '${PID}'",
            id="PID-outside-cmdStop",
        ),
        pytest.param(
            """
            peers:
              p: {proxy: "http://h:1", models: [a], apiKey: "${secret}"}
            """,
            "peers.p.apiKey",
            "unknown macro '${secret}'",
            id="undeclared-in-peer",
        ),
        pytest.param(
            """
            macros: {PORT: 1}
            """,
            "macros.PORT",
            "macro name 'PORT' is reserved",
            id="reserved-PORT",
        ),
        pytest.param(
            """
            macros: {PID: 1}
            """,
            "macros.PID",
            "macro name 'PID' is reserved",
            id="reserved-PID",
        ),
        pytest.param(
            """
            models:
              m:
                macros: {MODEL_ID: x}
                cmd: srv
                proxy: "http://h:1"
            """,
            "models.m.macros.MODEL_ID",
            "macro name 'MODEL_ID' is reserved",
            id="reserved-MODEL_ID-in-model",
        ),
        pytest.param(
            """
            macros: {"bad name": 1}
            """,
            "macros.bad name",
            "contains invalid characters",
            id="invalid-name",
        ),
        pytest.param(
            f"""
            macros: {{{"a" * 64}: 1}}
            """,
            "macros." + "a" * 64,
            "exceeds maximum length of 63 characters",
            id="name-too-long",
        ),
        pytest.param(
            """
            macros: {list: [1, 2]}
            """,
            "macros.list",
            "must be a scalar type",
            id="list-value",
        ),
        pytest.param(
            """
            macros: {map: {a: 1}}
            """,
            "macros.map",
            "must be a scalar type",
            id="map-value",
        ),
        pytest.param(
            """
            macros: {nothing: ~}
            """,
            "macros.nothing",
            "invalid type null",
            id="null-value",
        ),
        pytest.param(
            """
            macros: {loop: "a ${loop}"}
            """,
            "macros.loop",
            "macro 'loop' contains self-reference",
            id="self-reference",
        ),
        pytest.param(
            """
            macros: [a, b]
            """,
            "macros",
            "must be a mapping",
            id="macros-not-a-mapping",
        ),
        pytest.param(
            """
            models:
              m:
                cmd: srv
                proxy: "http://h:1"
                filters:
                  setParamsByID:
                    "${MODEL_ID}-x": {a: 1}
                    "m-x": {a: 2}
            """,
            "models.m.filters.setParamsByID.m-x",
            "resolve to the same value 'm-x'",
            id="setParamsByID-keys-collide",
        ),
        pytest.param(
            """
            models:
              m:
                cmd: srv
                proxy: "http://h:1"
                filters:
                  setParamsByID:
                    "${nope}": {a: 1}
            """,
            "models.m.filters.setParamsByID.${nope}",
            "unknown macro '${nope}'",
            id="setParamsByID-key-leftover",
        ),
    ],
)
def test_macro_errors(yaml_text: str, path: str, fragment: str) -> None:
    assert_problem(yaml_text, path, fragment)


def test_invalid_macro_is_reported_once_not_again_where_used() -> None:
    found = problems(
        """
        macros: {loop: "${loop}!"}
        models:
          m: {cmd: "srv ${loop}", proxy: "http://h:1"}
        """
    )
    assert [(p.path, p.message) for p in found] == [
        ("macros.loop", "macro 'loop' contains self-reference")
    ]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (-12, "-12"),
        (0.7, "0.7"),
        (1.0, "1"),
        (-2.5, "-2.5"),
        (123456.0, "123456"),
        (1234567.0, "1.234567e+06"),
        (1e21, "1e+21"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (1.5e-7, "1.5e-07"),
        (0.0, "0"),
        (float("inf"), "+Inf"),
        (float("-inf"), "-Inf"),
        (float("nan"), "NaN"),
        ("text", "text"),
    ],
)
def test_go_format(value: Any, text: str) -> None:
    assert go_format(value) == text


# ---- §1.4 ${PORT} ---------------------------------------------------------------------


def test_ports_follow_sorted_model_ids_and_only_models_that_use_them() -> None:
    config = load(
        """
        startPort: 7000
        models:
          zeta: {cmd: "srv --port ${PORT}"}
          alpha: {cmd: "srv --port ${PORT}"}
          fixed: {cmd: "srv --port 9999", proxy: "http://127.0.0.1:9999"}
          middle: {cmd: "srv -p ${PORT}"}
        """
    )
    ports = {mid: m.port for mid, m in config.models.items()}
    assert ports == {"alpha": 7000, "fixed": None, "middle": 7001, "zeta": 7002}
    assert list(config.models) == ["alpha", "fixed", "middle", "zeta"]
    assert config.models["alpha"].proxy == "http://localhost:7000"
    assert config.models["zeta"].cmd == "srv --port 7002"


def test_port_reaches_every_field_of_the_model() -> None:
    model = load(
        """
        macros: {portflag: "--port ${PORT}"}
        models:
          m:
            cmd: "srv ${portflag}"
            cmdStop: "stop ${PORT} ${PID}"
            checkEndpoint: /health?p=${PORT}
            env: ["P=${PORT}"]
            aliases: ["m-${PORT}"]
            metadata: {port: "${PORT}", text: "on ${PORT}"}
            filters:
              setParamsByID:
                "m@${PORT}": {x: 1}
        """
    ).models["m"]
    assert model.port == 5800
    assert model.cmd == "srv --port 5800"
    assert model.cmd_stop == "stop 5800 ${PID}"
    assert model.check_endpoint == "/health?p=5800"
    assert model.env == ["P=5800"]
    assert model.aliases == ["m-5800"]
    assert model.metadata == {"port": 5800, "text": "on 5800"}
    assert list(model.filters.set_params_by_id) == ["m@5800"]
    assert model.all_aliases == ["m-5800", "m@5800"]


@pytest.mark.parametrize(
    ("yaml_text", "path", "fragment"),
    [
        pytest.param(
            """
            models:
              m: {cmd: "srv --port 9000"}
            """,
            "models.m.proxy",
            "proxy uses ${PORT} but cmd does not - ${PORT} is only available when used in cmd",
            id="default-proxy-needs-PORT-in-cmd",
        ),
        pytest.param(
            """
            models:
              m: {cmd: "srv --port 9000", proxy: "http://localhost:${PORT}/v1"}
            """,
            "models.m.proxy",
            "proxy uses ${PORT} but cmd does not",
            id="explicit-proxy-with-PORT",
        ),
        pytest.param(
            """
            models:
              m: {cmd: "srv", proxy: "http://h:1", description: "port ${PORT}"}
            """,
            "models.m.description",
            "macro '${PORT}' should have been substituted",
            id="PORT-elsewhere-without-cmd-using-it",
        ),
        pytest.param(
            """
            models:
              m: {proxy: "http://h:1"}
            """,
            "models.m.cmd",
            "empty command",
            id="missing-cmd",
        ),
        pytest.param(
            """
            models:
              m: {cmd: "# only a comment"}
            """,
            "models.m.cmd",
            "empty command",
            id="comment-only-cmd-without-proxy-reports-only-cmd",
        ),
        pytest.param(
            """
            startPort: 65535
            models:
              a: {cmd: "srv ${PORT}"}
              b: {cmd: "srv ${PORT}"}
            """,
            "models.b.cmd",
            "no port left",
            id="ports-run-out",
        ),
    ],
)
def test_port_errors(yaml_text: str, path: str, fragment: str) -> None:
    assert_problem(yaml_text, path, fragment)
