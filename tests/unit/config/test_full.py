"""A config with every key loads; the same shape with one mistake per key yields one
problem per mistake, all in one ConfigError, each naming its path."""

from __future__ import annotations

from pathlib import Path

import pytest

from llamaswap.config import DEFAULT_GROUP, ConfigError, format_config, load_config, parse_config

DATA = Path(__file__).parent / "data"

EXPECTED: list[tuple[str, str]] = [
    ("healthCheckTimeout", "must be an integer"),
    ("logToStdout", "logToStdout must be one of: proxy, upstream, both, none"),
    ("logRequests", "must be true or false"),
    ("metricsMaxInMemory", "must be an integer"),
    ("captureBuffer", "must be >= 0"),
    ("store.path", "does not exist"),
    ("ui.activity.session_id", "must be a list"),
    ("performance.disabled", "must be true or false"),
    ("performance.every", "every must be at least 5s"),
    ("startPort", "startPort must be greater than 1"),
    ("sendLoadingState", "must be true or false"),
    ("includeAliasesInList", "must be true or false"),
    ("globalTTL", "globalTTL must be >= 0"),
    ("unloadTimeout", "unloadTimeout must be >= 0"),
    ("resources.disk", "must be a number"),
    ("macros.PORT", "macro name 'PORT' is reserved"),
    ("apiKeys[1]", "api key cannot contain spaces"),
    ("upstream.ignorePaths[0]", "invalid regular expression"),
    ("models.qwen-coder.macros.bad name", "contains invalid characters"),
    ("models.qwen-coder.cmdStop", "must be a string"),
    ("models.qwen-coder.name", "must be a string"),
    ("models.qwen-coder.description", "must be a string"),
    ("models.qwen-coder.env[0]", "must be NAME=value"),
    ("models.qwen-coder.checkEndpoint", "must be a string"),
    ("models.qwen-coder.ttl", "invalid TTL value -5"),
    ("models.qwen-coder.unloadTimeout", "invalid unloadTimeout value -1"),
    ("models.qwen-coder.useModelName", "must be a string"),
    ("models.qwen-coder.filters.stripParams", "must be a string"),
    ("models.qwen-coder.filters.setParams", "must be a mapping"),
    (
        "models.qwen-coder.filters.setParamsByID.embedder",
        "key 'embedder' conflicts with an existing model ID",
    ),
    ("models.qwen-coder.metadata", "must be a mapping"),
    ("models.qwen-coder.concurrencyLimit", "must be >= 0"),
    ("models.qwen-coder.sendLoadingState", "must be true or false"),
    ("models.qwen-coder.unlisted", "must be true or false"),
    ("models.qwen-coder.timeouts.connect", "must be >= 0"),
    ("models.qwen-coder.timeouts.keepalive", "must be a number"),
    ("models.qwen-coder.timeouts.responseHeader", "must be >= 0"),
    ("models.qwen-coder.timeouts.tlsHandshake", "must be >= 0"),
    ("models.qwen-coder.timeouts.expectContinue", "must be >= 0"),
    ("models.qwen-coder.timeouts.idleConn", "must be >= 0"),
    ("models.qwen-coder.compat.ignoreWebsockets", "must be true or false"),
    ("models.qwen-coder.capabilities.in[0]", 'invalid modality "video"'),
    ("models.qwen-coder.capabilities.out[0]", 'invalid modality "smell"'),
    ("models.qwen-coder.capabilities.tools", "must be true or false"),
    ("models.qwen-coder.capabilities.reranker", "must be true or false"),
    ("models.qwen-coder.capabilities.context", "must be >= 0"),
    ("models.qwen-coder.resources.vram", "needs 96 but the machine has only 48"),
    ("models.embedder.proxy", "invalid proxy URL"),
    ("models.qwen-coder.aliases[0]", "duplicate alias coder found in model: qwen-coder"),
    ("models.whisper.cmd", "empty command"),
    ("profiles.coding.pins.llm-code", 'references unknown model "no-such-model"'),
    ("profiles.old-style", "legacy list syntax"),
    ("selectors.fast-pool.strategy", 'unknown strategy "random"'),
    ("selectors.warmest.targets[0]", 'references unknown model "no-such-model"'),
    ("selectors.spill.settings.spillover", "must be >= 1"),
    ("hooks.on_startup.preload", "must be a list"),
    ("routing.router.settings.groups.together.members[1]", 'no model config for "no-such-model"'),
    ("routing.router.settings.groups.always.swap", "must be true or false"),
    ("routing.scheduler.use", 'unknown scheduler "lifo"'),
    (
        "routing.scheduler.settings.fifo.priority.no-such-model",
        'references unknown model "no-such-model"',
    ),
    ("routing.scheduler.settings.fifo.maxWaitSeconds", "must be > 0"),
    ("peers.lab.proxy", "proxy is required"),
    ("peers.empty.models", "peer models can not be empty"),
    ("peers.keyed.apiKey", "must be a string"),
    ("peers.filtered.filters.stripParams", "must be a string"),
    ("peers.slow.timeouts.connect", "must be >= 0"),
]


def test_full_config_loads(tmp_path: Path) -> None:
    environ = {"STORE_DIR": str(tmp_path), "EXTRA_KEY": "sk-extra", "LAB_KEY": "lab-key"}
    config = load_config(DATA / "full.yaml", environ=environ)
    assert config.warnings == []
    assert config.health_check_timeout == 90
    assert config.log_to_stdout == "both"
    assert config.store_path == f"{tmp_path}/activity.sqlite"
    assert config.ui_session_headers == ["X-Session-ID", "X-Conversation"]
    assert config.performance_every == 30.0
    assert config.api_keys == ["sk-local-1", "sk-extra", "sk-team-1"]
    team = config.key_scopes["sk-team-1"]
    assert (team.name, team.models, team.admin, team.concurrency_limit) == (
        "team",
        ("qwen-*", "embedder"),
        False,
        4,
    )
    assert config.resources == {"vram": 48, "ram": 256}
    assert list(config.models) == ["comfyui_auto", "embedder", "qwen-coder", "whisper"]
    # ports in sorted-ID order, only for models whose cmd uses ${PORT}
    assert {m.id: m.port for m in config.models.values()} == {
        "comfyui_auto": 9100,
        "embedder": 9101,
        "qwen-coder": 9102,
        "whisper": None,
    }
    coder = config.models["qwen-coder"]
    assert coder.args() == [
        "/opt/llama.cpp/llama-server",
        "--port",
        "9102",
        "--ctx-size",
        "32768",  # the model's ctx replaces the global one inside the global base-args
        "--host",
        "127.0.0.1",
        "--model",
        "/models/qwen-coder-Q4_K_M.gguf",
        "--temp",
        "0.6",
    ]
    assert coder.stop_args(77) == ["kill", "-TERM", "77"]
    assert coder.metadata == {"port": 9102, "temperature": 0.6, "note": "ctx 32768 for qwen-coder"}
    assert coder.filters.set_params == {"temperature": 0.6, "top_p": 0.9}
    assert coder.all_aliases == ["coder", "gpt-4o-mini", "qwen-coder:fast"]
    assert coder.ttl == 300 and config.models["embedder"].ttl == 600
    assert config.models["whisper"].ttl == 0
    assert config.resolve("qwen-coder:fast") == "qwen-coder"
    assert config.preload == ["qwen-coder", "embedder"]
    routing = config.routing
    assert routing.router == "group"
    assert list(routing.groups) == ["together", "always", DEFAULT_GROUP]
    assert routing.groups[DEFAULT_GROUP].members == ["comfyui_auto"]
    assert routing.matrix is None  # present in settings, but `use: group`
    assert routing.priorities == {"qwen-coder": 10, "whisper": -1}
    assert routing.max_wait_seconds == 45
    assert config.selectors["fast-pool"].resolved_targets == ["qwen-coder", "embedder"]
    assert config.selectors["remote-first"].resolved_targets == ["lab/llama-70b", "qwen-coder"]
    assert config.profiles["coding"].pins["image-gen"] == ""
    assert config.peers["lab"].api_key == "lab-key"
    assert "qwen-coder:fast" in format_config(config)


def test_one_problem_per_mistake_all_reported_together() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(DATA / "full_mistakes.yaml", environ={})
    found = info.value.problems
    unexpected = [
        str(p)
        for p in found
        if not any(p.path == path and fragment in p.message for path, fragment in EXPECTED)
    ]
    missing = [
        (path, fragment)
        for path, fragment in EXPECTED
        if not any(p.path == path and fragment in p.message for p in found)
    ]
    assert unexpected == [] and missing == []
    assert len(found) == len(EXPECTED)
    source = str(DATA / "full_mistakes.yaml")
    assert all(p.source == source and p.line is not None for p in found)
    assert len(str(info.value).splitlines()) == len(EXPECTED)


def test_every_schema_key_is_exercised() -> None:
    """full.yaml really does contain every key of the model and top-level schemas."""
    from llamaswap.config.schema import MODEL_KEYS, TOP_LEVEL_KEYS

    text = (DATA / "full.yaml").read_text()
    # legacy spellings that must not appear next to their modern form in one file
    legacy = {"groups", "matrix"}
    for key in sorted((TOP_LEVEL_KEYS - legacy) | MODEL_KEYS):
        assert f"{key}:" in text, key
    assert parse_config("groups: {}\nmatrix: ~\n", environ={}).routing.router == "group"
