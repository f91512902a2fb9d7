"""Expanded tree -> effective `Config`: typed decode, defaults, cross-checks (§1.2, §1.5-1.11)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from llamaswap.config.build_models import Defaults, build_model, register_aliases
from llamaswap.config.errors import PathT, Problems
from llamaswap.config.expansion import MAX_PORT, Expanded
from llamaswap.config.ids import model_id_problem
from llamaswap.config.keys import build_keys
from llamaswap.config.models import Config, ModelConfig, ResourceProbe
from llamaswap.config.namespace import (
    Namespace,
    build_peers,
    build_profiles,
    build_selectors,
    check_peer_namespace,
    resolve_preload,
)
from llamaswap.config.ports import warn_shared_ports
from llamaswap.config.routing import build_routing
from llamaswap.config.schema import (
    RawModel,
    RawResource,
    RawTop,
    Section,
    decode,
    warn_unknown_keys,
)
from llamaswap.config.serving import build_serving
from llamaswap.config.shell import split_command

MIN_HEALTH_CHECK_TIMEOUT = 15
LOG_LEVELS = ("debug", "info", "warn", "error")
LOG_TIME_FORMATS = (
    *("ansic", "unixdate", "rubydate", "rfc822", "rfc822z", "rfc850", "rfc1123", "rfc1123z"),
    *("rfc3339", "rfc3339nano", "kitchen", "stamp", "stampmilli", "stampmicro", "stampnano"),
)
LOG_TO_STDOUT = ("proxy", "upstream", "both", "none")
DEFAULT_IGNORE_PATHS = [r".*\.(js|json|css|png|gif|jpg|jpeg|ico|txt)$"]
DEFAULT_SESSION_HEADERS = ["X-Session-ID", "X-Litellm-Session-Id"]
MIN_PERFORMANCE_EVERY = 5.0
DEFAULT_PERFORMANCE_EVERY = 5.0

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_duration(text: str) -> float:
    """A Go duration string (`1h30m`, `15s`, `500ms`) -> seconds. Raises ValueError."""
    body = text.strip()
    sign = -1.0 if body.startswith("-") else 1.0
    body = body.lstrip("+-")
    if body == "0":
        return 0.0
    if not body:
        raise ValueError(f'invalid duration "{text}"')
    total, pos = 0.0, 0
    for match in _DURATION_PART.finditer(body):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(body):
        raise ValueError(f'invalid duration "{text}" (use units such as 500ms, 15s, 1m30s)')
    return sign * total


def _decode_top(top: dict[str, Any], problems: Problems) -> RawTop:
    raw = decode(RawTop, top, (), problems)
    for name, info in RawTop.model_fields.items():
        value = getattr(raw, name)
        key = info.alias or name
        if key in top and isinstance(value, Section):
            warn_unknown_keys(value, (key,), problems)
    return raw


def build_config(expanded: Expanded, problems: Problems, sources: list[str]) -> Config:
    raw = _decode_top(expanded.top, problems)

    health_check_timeout = max(raw.health_check_timeout, MIN_HEALTH_CHECK_TIMEOUT)
    log_level = raw.log_level.strip().lower()
    if log_level not in LOG_LEVELS:
        problems.warn(("logLevel",), f"unknown log level '{raw.log_level}'; using info")
        log_level = "info"
    log_time_format = raw.log_time_format.strip().lower()
    if log_time_format and log_time_format not in LOG_TIME_FORMATS:
        problems.warn(
            ("logTimeFormat",), f"unknown time format '{raw.log_time_format}'; no timestamps"
        )
        log_time_format = ""
    log_to_stdout = raw.log_to_stdout.strip()
    if log_to_stdout not in LOG_TO_STDOUT:
        problems.add(("logToStdout",), "logToStdout must be one of: proxy, upstream, both, none")
    if raw.capture_buffer < 0:
        problems.add(
            ("captureBuffer",), f"must be >= 0 (0 disables captures), got {raw.capture_buffer}"
        )
    if raw.start_port < 1:
        problems.add(("startPort",), "startPort must be greater than 1")
    elif raw.start_port > MAX_PORT:
        problems.add(("startPort",), f"startPort must be at most {MAX_PORT}")
    if raw.global_ttl < 0:
        problems.add(("globalTTL",), "globalTTL must be >= 0")
    if raw.unload_timeout < 0:
        problems.add(("unloadTimeout",), "unloadTimeout must be >= 0")
    unload_timeout = raw.unload_timeout if raw.unload_timeout > 0 else 10
    if raw.client_write_timeout < 0:
        problems.add(("clientWriteTimeout",), "clientWriteTimeout must be >= 0 (0 disables it)")

    key_scopes = build_keys([_key_entry(e) for e in raw.api_keys], problems)
    api_keys = list(key_scopes)

    capacity: dict[str, float] = {}
    probes: dict[str, ResourceProbe] = {}
    for name, value in raw.resources.items():
        amount = value if isinstance(value, int | float) else value.capacity
        if not name.strip():
            problems.add(("resources",), "resource names cannot be empty")
        elif amount < 0:
            problems.add(("resources", name), f"must be >= 0, got {amount:g}")
        else:
            capacity[name] = amount
        if isinstance(value, RawResource) and value.probe.strip():
            probe = _resource_probe(name, value, problems)
            if probe is not None:
                probes[name] = probe

    if raw.persist_slots_timeout <= 0:
        problems.add(
            ("persistSlotsTimeout",), f"must be > 0 seconds, got {raw.persist_slots_timeout:g}"
        )
    defaults = Defaults(
        health_check_timeout=health_check_timeout,
        global_ttl=max(raw.global_ttl, 0),
        unload_timeout=unload_timeout,
        send_loading_state=raw.send_loading_state,
        persist_slots_timeout=float(raw.persist_slots_timeout),
        capacity=capacity,
    )
    for model_id in sorted(set(expanded.models) | expanded.broken_models):
        reason = model_id_problem(model_id)
        if reason:  # on `models`, at the ID's line: the ID itself is the mistake
            problems.add(("models",), reason, mark=problems.locate(("models", model_id)))
    models: dict[str, ModelConfig] = {}
    for model_id in sorted(expanded.models):
        path: PathT = ("models", model_id)
        raw_model = decode(RawModel, expanded.models[model_id], path, problems)
        warn_unknown_keys(raw_model, path, problems)
        models[model_id] = build_model(
            model_id, raw_model, defaults, expanded.ports.get(model_id), problems
        )
    known_ids = set(models) | expanded.broken_models
    models, aliases = register_aliases(models, known_ids, problems)

    peers = build_peers(raw.peers, problems)
    ns = Namespace(known_ids, aliases, peers)
    routing = build_routing(raw, models, known_ids, aliases, capacity, problems)
    selector_ids = {name for name in raw.selectors if name.strip()}
    profiles = build_profiles(raw.profiles, ns, selector_ids, problems)
    selectors = build_selectors(raw.selectors, ns, models, routing, capacity, problems)
    check_peer_namespace(ns, profiles, problems)
    preload = resolve_preload(raw.hooks.on_startup.preload, ns, problems)

    ignore_paths = _ignore_paths(raw.upstream.ignore_paths, problems)
    every = _performance_every(raw.performance.every, problems)
    store_path = _store_path(raw, problems)
    store_max_rows, store_max_age = _store_retention(raw, problems)
    session_headers = _session_headers(raw.ui.activity.session_id)
    serving = build_serving(raw, problems)

    problems.raise_if_any()
    config = Config(
        health_check_timeout=health_check_timeout,
        log_level=log_level,
        log_time_format=log_time_format,
        log_to_stdout=log_to_stdout,
        metrics_max_in_memory=raw.metrics_max_in_memory if raw.metrics_max_in_memory > 0 else 1000,
        capture_buffer=raw.capture_buffer,
        start_port=raw.start_port,
        send_loading_state=raw.send_loading_state,
        include_aliases_in_list=raw.include_aliases_in_list,
        global_ttl=raw.global_ttl,
        unload_timeout=unload_timeout,
        client_write_timeout=raw.client_write_timeout,
        api_keys=api_keys,
        key_scopes=key_scopes,
        request_header_timeout=serving.request_header_timeout,
        max_connections=serving.max_connections,
        allowed_origins=serving.allowed_origins,
        trusted_proxies=serving.trusted_proxies,
        models=models,
        profiles=profiles,
        selectors=selectors,
        preload=preload,
        routing=routing,
        peers=peers,
        ignore_paths=ignore_paths,
        performance_disabled=raw.performance.disabled,
        performance_every=every,
        store_path=store_path,
        store_max_rows=store_max_rows,
        store_max_age=store_max_age,
        ui_session_headers=session_headers,
        resources=capacity,
        probes=probes,
        warnings=[str(w) for w in problems.sorted_warnings()],
        sources=sources,
    )
    warned = len(problems.warnings)
    warn_shared_ports(config, problems)  # needs the finished config's routing policy
    if len(problems.warnings) == warned:
        return config
    return config.model_copy(update={"warnings": [str(w) for w in problems.sorted_warnings()]})


def _ignore_paths(patterns: list[str], problems: Problems) -> list[str]:
    for index, pattern in enumerate(patterns):
        try:
            re.compile(pattern)
        except re.error as exc:
            problems.add(
                ("upstream", "ignorePaths", index),
                f"invalid regular expression {pattern!r}: {exc}",
            )
    return list(patterns) if patterns else list(DEFAULT_IGNORE_PATHS)


def _performance_every(text: str | None, problems: Problems) -> float:
    if text is None:
        return DEFAULT_PERFORMANCE_EVERY
    try:
        every = parse_duration(text)
    except ValueError as exc:
        problems.add(("performance", "every"), str(exc))
        return DEFAULT_PERFORMANCE_EVERY
    if every == 0:
        return DEFAULT_PERFORMANCE_EVERY  # like an omitted value
    if every < MIN_PERFORMANCE_EVERY:
        problems.add(("performance", "every"), f"every must be at least 5s, got {text}")
    return every


def _store_path(raw: RawTop, problems: Problems) -> str | None:
    if raw.store is None:
        return None
    where: PathT = ("store", "path")
    path = raw.store.path
    if not path.strip():
        problems.add(where, "store.path must not be empty")
        return None
    target = Path(path)
    if target.exists():
        if target.is_dir():
            problems.add(where, f"{path} is a directory, not a file")
        elif not target.is_file():
            problems.add(where, f"{path} is not a regular file")
        elif not os.access(target, os.W_OK):
            problems.add(where, f"{path} is not writable")
    else:
        parent = target.parent
        if not parent.is_dir():
            problems.add(where, f"directory {parent} does not exist")
        elif not os.access(parent, os.W_OK | os.X_OK):
            problems.add(where, f"directory {parent} is not writable")
    return path


def _store_retention(raw: RawTop, problems: Problems) -> tuple[int, float]:
    """Ours: `store.maxRows` (rows kept, 0 = no limit) and `store.maxAge` (a Go duration,
    0 or absent = no limit); both are enforced by the activity store's writer."""
    if raw.store is None:
        return 100_000, 0.0
    rows = raw.store.max_rows
    if rows < 0:
        problems.add(("store", "maxRows"), f"must be >= 0 (0 keeps every row), got {rows}")
    age = 0.0
    if raw.store.max_age is not None:
        try:
            age = parse_duration(raw.store.max_age)
        except ValueError as exc:
            problems.add(("store", "maxAge"), str(exc))
        if age < 0:
            problems.add(("store", "maxAge"), f"must not be negative, got {raw.store.max_age}")
    return max(rows, 0), max(age, 0.0)


def _session_headers(names: list[str] | None) -> list[str]:
    if names is None:
        return list(DEFAULT_SESSION_HEADERS)
    out: list[str] = []
    seen: set[str] = set()
    for name in names:
        name = name.strip()
        if name and name.lower() not in seen:
            seen.add(name.lower())
            out.append(name)
    return out


def _resource_probe(name: str, raw: RawResource, problems: Problems) -> ResourceProbe | None:
    """A resource's probe, checked: a known built-in or a command that splits."""
    path = ("resources", name)
    text = raw.probe.strip()
    ok = True
    if text != "nvidia":
        try:
            split_command(text)
        except ValueError as exc:
            problems.add((*path, "probe"), f"not a command: {exc}")
            ok = False
    for key, seconds in (
        ("probeTimeout", raw.probe_timeout),
        ("recoveryTimeout", raw.recovery_timeout),
    ):
        if seconds <= 0:
            problems.add((*path, key), f"must be > 0 seconds, got {seconds:g}")
            ok = False
    if not ok:
        return None
    return ResourceProbe(probe=text, timeout=raw.probe_timeout, recovery=raw.recovery_timeout)


def _key_entry(entry: object) -> object:
    """A YAML scalar key as text (numbers and the like are keys too, as in llama-swap)."""
    if isinstance(entry, dict | str) or entry is None:
        return "" if entry is None else entry
    return str(entry)
