"""§1.2 top-level and §1.5/§1.7 per-model settings: defaults, effective values, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llamaswap.config import Capabilities, Timeouts
from tests.unit.config.helpers import assert_problem, load

M = "\n  m: {cmd: srv, proxy: 'http://127.0.0.1:9000'}"


def test_top_level_defaults() -> None:
    config = load("")
    assert config.health_check_timeout == 120
    assert config.log_level == "info"
    assert config.log_time_format == ""
    assert config.log_to_stdout == "proxy"
    assert config.metrics_max_in_memory == 1000
    assert config.capture_buffer == 5
    assert config.start_port == 5800
    assert config.send_loading_state is False
    assert config.include_aliases_in_list is False
    assert config.global_ttl == 0
    assert config.unload_timeout == 10
    assert config.api_keys == []
    assert config.preload == []
    assert config.peers == {} and config.profiles == {} and config.selectors == {}
    assert config.ignore_paths == [r".*\.(js|json|css|png|gif|jpg|jpeg|ico|txt)$"]
    assert config.performance_disabled is False
    assert config.performance_every == 5.0
    assert config.store_path is None
    assert config.ui_session_headers == ["X-Session-ID", "X-Litellm-Session-Id"]
    assert config.resources == {}
    assert config.routing.router == "group"
    assert config.routing.max_wait_seconds == 60.0


@pytest.mark.parametrize(
    ("yaml_text", "attribute", "expected"),
    [
        ("healthCheckTimeout: 5", "health_check_timeout", 15),
        ("healthCheckTimeout: 0", "health_check_timeout", 15),
        ("healthCheckTimeout: 300", "health_check_timeout", 300),
        ("logLevel: ' DEBUG '", "log_level", "debug"),
        ("logLevel: verbose", "log_level", "info"),
        ("logTimeFormat: RFC3339", "log_time_format", "rfc3339"),
        ("logTimeFormat: iso", "log_time_format", ""),
        ("logToStdout: both", "log_to_stdout", "both"),
        ("metricsMaxInMemory: 0", "metrics_max_in_memory", 1000),
        ("metricsMaxInMemory: -5", "metrics_max_in_memory", 1000),
        ("metricsMaxInMemory: 50", "metrics_max_in_memory", 50),
        ("captureBuffer: 0", "capture_buffer", 0),
        ("unloadTimeout: 0", "unload_timeout", 10),
        ("unloadTimeout: 3", "unload_timeout", 3),
        ("globalTTL: 600", "global_ttl", 600),
        ("upstream: {ignorePaths: ['^/ws$']}", "ignore_paths", ["^/ws$"]),
        (
            "upstream: {ignorePaths: []}",
            "ignore_paths",
            [r".*\.(js|json|css|png|gif|jpg|jpeg|ico|txt)$"],
        ),
        ("performance: {every: 1m30s}", "performance_every", 90.0),
        ("performance: {every: 5s}", "performance_every", 5.0),
        ("performance: {every: '0'}", "performance_every", 5.0),
        ("performance: {disabled: true}", "performance_disabled", True),
        (
            "ui: {activity: {session_id: [' a ', '', 'A', b]}}",
            "ui_session_headers",
            ["a", "b"],
        ),
        ("ui: {activity: {session_id: []}}", "ui_session_headers", []),
        ("resources: {vram: 48, ram: 128.5}", "resources", {"vram": 48.0, "ram": 128.5}),
        ("apiKeys: [a, b]", "api_keys", ["a", "b"]),
    ],
)
def test_top_level_values(yaml_text: str, attribute: str, expected: Any) -> None:
    assert getattr(load(yaml_text), attribute) == expected


def test_store_path(tmp_path: Path) -> None:
    target = tmp_path / "activity.sqlite"
    assert load(f"store: {{path: '{target}'}}").store_path == str(target)
    target.write_text("")
    assert load(f"store: {{path: '{target}'}}").store_path == str(target)


@pytest.mark.parametrize(
    ("yaml_text", "path", "fragment"),
    [
        (
            "logToStdout: all",
            "logToStdout",
            "logToStdout must be one of: proxy, upstream, both, none",
        ),
        ("startPort: 0", "startPort", "startPort must be greater than 1"),
        ("globalTTL: -1", "globalTTL", "globalTTL must be >= 0"),
        ("unloadTimeout: -2", "unloadTimeout", "unloadTimeout must be >= 0"),
        ("captureBuffer: -1", "captureBuffer", "must be >= 0"),
        ("apiKeys: ['']", "apiKeys[0]", "empty api key found in apiKeys"),
        ("apiKeys: [ok, 'a b']", "apiKeys[1]", "api key cannot contain spaces"),
        ("upstream: {ignorePaths: ['(']}", "upstream.ignorePaths[0]", "invalid regular expression"),
        ("performance: {every: 2s}", "performance.every", "every must be at least 5s"),
        ("performance: {every: soon}", "performance.every", 'invalid duration "soon"'),
        ("store: {path: '  '}", "store.path", "store.path must not be empty"),
        ("store: {}", "store.path", "store.path must not be empty"),
        ("store: {path: /no/such/dir/x.db}", "store.path", "does not exist"),
        ("resources: {vram: -1}", "resources.vram", "must be >= 0"),
        ("resources: {vram: lots}", "resources.vram", "must be a number"),
    ],
)
def test_top_level_errors(yaml_text: str, path: str, fragment: str) -> None:
    assert_problem(yaml_text, path, fragment)


def test_store_path_must_not_be_a_directory(tmp_path: Path) -> None:
    assert_problem(f"store: {{path: '{tmp_path}'}}", "store.path", "is a directory")


# ---- models ---------------------------------------------------------------------------


def test_model_defaults() -> None:
    model = load(f"models:{M}").models["m"]
    assert model.id == "m"
    assert model.cmd == "srv"
    assert model.args() == ["srv"]
    assert model.cmd_stop == "" and model.stop_args(42) is None
    assert model.check_endpoint == "/health" and not model.health_check_disabled
    assert model.ttl == 0
    assert model.unload_timeout == 10
    assert model.health_check_timeout == 120
    assert model.aliases == [] and model.all_aliases == []
    assert model.env == []
    assert model.name == "" and model.description == ""
    assert model.unlisted is False
    assert model.use_model_name == ""
    assert model.concurrency_limit == 10
    assert model.send_loading_state is False
    assert model.metadata == {}
    assert model.filters.strip_params == [] and model.filters.set_params == {}
    assert model.timeouts == Timeouts(
        connect=30,
        keepalive=30,
        response_header=0,
        tls_handshake=10,
        expect_continue=1,
        idle_conn=90,
    )
    assert model.capabilities is None
    assert model.ignore_websockets is False
    assert model.resources == {}
    assert model.port is None


def model_with(settings: str, top: str = "") -> Any:
    return load(
        f"""
{top}
models:
  m:
    cmd: srv
    proxy: 'http://127.0.0.1:9000'
{settings}
"""
    ).models["m"]


@pytest.mark.parametrize(
    ("settings", "top", "attribute", "expected"),
    [
        ("    ttl: -1", "globalTTL: 300", "ttl", 300),
        ("    ttl: 0", "globalTTL: 300", "ttl", 0),
        ("    ttl: 45", "globalTTL: 300", "ttl", 45),
        ("", "globalTTL: 300", "ttl", 300),
        ("    unloadTimeout: 0", "unloadTimeout: 25", "unload_timeout", 25),
        ("    unloadTimeout: 45", "unloadTimeout: 25", "unload_timeout", 45),
        ("", "healthCheckTimeout: 200", "health_check_timeout", 200),
        ("    concurrencyLimit: 0", "", "concurrency_limit", 10),
        ("    concurrencyLimit: 2", "", "concurrency_limit", 2),
        ("", "sendLoadingState: true", "send_loading_state", True),
        ("    sendLoadingState: false", "sendLoadingState: true", "send_loading_state", False),
        ("    sendLoadingState: true", "", "send_loading_state", True),
        ("    checkEndpoint: ' none '", "", "check_endpoint", "none"),
        ("    name: '  Qwen  '", "", "name", "Qwen"),
        ("    description: ' d '", "", "description", "d"),
        ("    unlisted: true", "", "unlisted", True),
        ("    useModelName: org/model", "", "use_model_name", "org/model"),
        ("    env: [A=1, B=x=y]", "", "env", ["A=1", "B=x=y"]),
        ("    aliases: [a, ' b ', '']", "", "aliases", ["a", "b"]),
        ("    compat: {ignoreWebsockets: true}", "", "ignore_websockets", True),
        ("    cmdStop: |\n      # c\n      docker stop x", "", "cmd_stop", "docker stop x\n"),
        ("    cmdStop: '# only a comment'", "", "cmd_stop", ""),
        (
            "    timeouts: {connect: 5, responseHeader: 60}",
            "",
            "timeouts",
            Timeouts(connect=5, response_header=60),
        ),
        (
            "    capabilities: {in: [text, image, text], out: [text], tools: true, context: 8192}",
            "",
            "capabilities",
            Capabilities(input=["text", "image"], output=["text"], tools=True, context=8192),
        ),
        ("    capabilities: {in: [], tools: false, context: 0}", "", "capabilities", None),
        ("    resources: {vram: 20}", "resources: {vram: 24}", "resources", {"vram": 20.0}),
    ],
)
def test_model_values(settings: str, top: str, attribute: str, expected: Any) -> None:
    assert getattr(model_with(settings, top), attribute) == expected


def test_checkendpoint_none_disables_health_checks() -> None:
    assert model_with("    checkEndpoint: none").health_check_disabled


def test_stop_args_fill_in_the_pid() -> None:
    model = model_with("    cmdStop: 'kill -TERM ${PID}'")
    assert model.stop_args(4242) == ["kill", "-TERM", "4242"]


def test_comfyui_auto_special_case() -> None:
    config = load(
        """
        models:
          comfyui_auto: {cmd: srv, proxy: "http://h:1", concurrencyLimit: 4}
          big: {cmd: srv, proxy: "http://h:2", concurrencyLimit: 80}
        """
    )
    comfy = config.models["comfyui_auto"]
    assert comfy.concurrency_limit == 50
    assert comfy.ignore_websockets is True
    assert config.models["big"].concurrency_limit == 80


@pytest.mark.parametrize(
    ("settings", "top", "path", "fragment"),
    [
        ("    ttl: -2", "", "models.m.ttl", "invalid TTL value -2"),
        ("    unloadTimeout: -1", "", "models.m.unloadTimeout", "invalid unloadTimeout value -1"),
        ("    concurrencyLimit: -1", "", "models.m.concurrencyLimit", "must be >= 0"),
        ("    env: [NOEQUALS]", "", "models.m.env[0]", "must be NAME=value"),
        ("    env: ['=x']", "", "models.m.env[0]", "must be NAME=value"),
        ("    timeouts: {idleConn: -1}", "", "models.m.timeouts.idleConn", "must be >= 0"),
        (
            "    capabilities: {in: [text, video]}",
            "",
            "models.m.capabilities.in[1]",
            'invalid modality "video"',
        ),
        (
            "    capabilities: {out: [smell]}",
            "",
            "models.m.capabilities.out[0]",
            'invalid modality "smell"',
        ),
        ("    capabilities: {context: -1}", "", "models.m.capabilities.context", "must be >= 0"),
        (
            "    resources: {gpu: 1}",
            "resources: {vram: 24}",
            "models.m.resources.gpu",
            "unknown resource 'gpu'",
        ),
        (
            "    resources: {vram: 30}",
            "resources: {vram: 24}",
            "models.m.resources.vram",
            "needs 30 but the machine has only 24",
        ),
        (
            "    resources: {vram: -3}",
            "resources: {vram: 24}",
            "models.m.resources.vram",
            "must be >= 0",
        ),
    ],
)
def test_model_errors(settings: str, top: str, path: str, fragment: str) -> None:
    text = f"""
{top}
models:
  m:
    cmd: srv
    proxy: 'http://127.0.0.1:9000'
{settings}
"""
    assert_problem(text, path, fragment)


@pytest.mark.parametrize(
    "proxy", ["localhost:8080", "ftp://host/x", "http://", "http://host:99999", "not a url"]
)
def test_invalid_proxy_urls(proxy: str) -> None:
    assert_problem(
        f"models:\n  m: {{cmd: srv, proxy: '{proxy}'}}", "models.m.proxy", "invalid proxy URL"
    )


def test_warnings_for_odd_but_valid_settings() -> None:
    config = load(
        """
        logLevel: loud
        models:
          m: {cmd: srv, proxy: "http://h:1", checkEndpoint: health, aliases: ["", m]}
        """
    )
    messages = "\n".join(config.warnings)
    assert "unknown log level 'loud'" in messages
    assert "does not start with '/'" in messages
    assert "blank alias ignored" in messages
    assert "alias 'm' is also a model ID" in messages


# ---- aliases and filters (§1.5, §1.7) ---------------------------------------------------


def test_filters_are_normalised() -> None:
    model = model_with(
        """    filters:
      stripParams: " top_p, temperature,,model, top_p "
      setParams: {temperature: 0.7, model: forced, nested: {a: [1, 2]}}
      setParamsByID:
        "${MODEL_ID}": {effort: medium}
        "m:high": {effort: high, model: no}"""
    )
    assert model.filters.strip_params == ["temperature", "top_p"]
    assert model.filters.set_params == {"temperature": 0.7, "nested": {"a": [1, 2]}}
    assert model.filters.set_params_by_id == {
        "m": {"effort": "medium"},
        "m:high": {"effort": "high"},
    }
    assert model.all_aliases == ["m:high"]  # the model's own ID is not an alias


def test_legacy_strip_params_key() -> None:
    assert model_with("    filters: {strip_params: 'b, a'}").filters.strip_params == ["a", "b"]
    model = model_with("    filters: {stripParams: c, strip_params: 'b, a'}")
    assert model.filters.strip_params == ["c"]


def test_resolve_ids_aliases_and_set_params_by_id_keys() -> None:
    config = load(
        """
        models:
          qwen:
            cmd: srv
            proxy: "http://h:1"
            aliases: [gpt-4o, q]
            filters:
              setParamsByID:
                "qwen:think": {think: true}
          q2: {cmd: srv, proxy: "http://h:2", aliases: [qwen2]}
        """
    )
    assert config.resolve("qwen") == "qwen"
    assert config.resolve("gpt-4o") == "qwen"
    assert config.resolve("qwen:think") == "qwen"
    assert config.resolve("qwen2") == "q2"
    assert config.resolve("nope") is None
    assert config.aliases() == {"gpt-4o": "qwen", "q": "qwen", "qwen:think": "qwen", "qwen2": "q2"}


def test_model_ids_win_over_aliases() -> None:
    config = load(
        """
        models:
          a: {cmd: srv, proxy: "http://h:1", aliases: [b]}
          b: {cmd: srv, proxy: "http://h:2"}
        """
    )
    assert config.resolve("b") == "b"


@pytest.mark.parametrize(
    ("yaml_text", "path", "fragment"),
    [
        pytest.param(
            """
            models:
              a: {cmd: srv, proxy: "http://h:1", aliases: [x]}
              b: {cmd: srv, proxy: "http://h:2", aliases: [y, x]}
            """,
            "models.b.aliases[1]",
            "duplicate alias x found in model: b",
            id="duplicate-alias",
        ),
        pytest.param(
            """
            models:
              a: {cmd: srv, proxy: "http://h:1"}
              b:
                cmd: srv
                proxy: "http://h:2"
                filters: {setParamsByID: {a: {x: 1}}}
            """,
            "models.b.filters.setParamsByID.a",
            "key 'a' conflicts with an existing model ID",
            id="setParamsByID-key-is-another-model",
        ),
        pytest.param(
            """
            models:
              a: {cmd: srv, proxy: "http://h:1", aliases: [fast]}
              b:
                cmd: srv
                proxy: "http://h:2"
                filters: {setParamsByID: {fast: {x: 1}}}
            """,
            "models.b.filters.setParamsByID.fast",
            "duplicate alias 'fast' in model b filters.setParamsByID, already used by model a",
            id="setParamsByID-key-is-another-models-alias",
        ),
    ],
)
def test_alias_errors(yaml_text: str, path: str, fragment: str) -> None:
    assert_problem(yaml_text, path, fragment)


def test_set_params_by_id_key_may_repeat_own_alias() -> None:
    config = load(
        """
        models:
          a:
            cmd: srv
            proxy: "http://h:1"
            aliases: [fast]
            filters: {setParamsByID: {fast: {x: 1}}}
        """
    )
    assert config.models["a"].all_aliases == ["fast"]
