"""Per-model effective settings and the alias namespace (§1.5, §1.7, our `resources`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from llamaswap.config.errors import PathT, Problems
from llamaswap.config.expansion import MAX_PORT
from llamaswap.config.models import Capabilities, ModelConfig
from llamaswap.config.parts import build_filters, build_timeouts, url_problem
from llamaswap.config.schema import RawCapabilities, RawModel
from llamaswap.config.shell import split_command

DEFAULT_CONCURRENCY = 10
COMFYUI_MODEL = "comfyui_auto"
COMFYUI_MIN_CONCURRENCY = 50
MODALITIES = ("text", "audio", "image")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Defaults:
    """The global values a model falls back to."""

    health_check_timeout: int = 120
    global_ttl: int = 0
    unload_timeout: int = 10
    send_loading_state: bool = False
    persist_slots_timeout: float = 30.0
    capacity: dict[str, float] = field(default_factory=dict)


def build_model(
    model_id: str,
    raw: RawModel,
    defaults: Defaults,
    port: int | None,
    problems: Problems,
) -> ModelConfig:
    path: PathT = ("models", model_id)

    cmd = raw.cmd
    try:
        split_command(cmd)
    except ValueError:
        problems.add((*path, "cmd"), "cmd is required (empty command)")

    proxy = raw.proxy.strip()
    # ${PORT} left in proxy, or a port above 65535, was already reported during expansion.
    if "${PORT}" not in proxy and (port is None or port <= MAX_PORT):
        reason = url_problem(proxy)
        if reason:
            problems.add((*path, "proxy"), f'invalid proxy URL "{proxy}": {reason}')

    check_endpoint = raw.check_endpoint.strip()
    if check_endpoint != "none" and not check_endpoint.startswith("/"):
        problems.warn(
            (*path, "checkEndpoint"),
            f"'{check_endpoint}' does not start with '/'; it is appended to the proxy URL as is",
        )

    ttl = raw.ttl
    if ttl == -1:
        ttl = defaults.global_ttl
    elif ttl < -1:
        problems.add((*path, "ttl"), f"invalid TTL value {raw.ttl}")
        ttl = defaults.global_ttl

    unload_timeout = raw.unload_timeout
    if unload_timeout < 0:
        problems.add((*path, "unloadTimeout"), f"invalid unloadTimeout value {unload_timeout}")
    if unload_timeout <= 0:
        unload_timeout = defaults.unload_timeout

    concurrency = raw.concurrency_limit
    if concurrency < 0:
        problems.add((*path, "concurrencyLimit"), f"must be >= 0 (0 = default), got {concurrency}")
    if concurrency <= 0:
        concurrency = DEFAULT_CONCURRENCY
    ignore_websockets = raw.compat.ignore_websockets
    if model_id == COMFYUI_MODEL:
        concurrency = max(concurrency, COMFYUI_MIN_CONCURRENCY)
        ignore_websockets = True

    aliases: list[str] = []
    for index, alias in enumerate(raw.aliases):
        if alias.strip():
            aliases.append(alias.strip())
        else:
            problems.warn((*path, "aliases", index), "blank alias ignored")

    for index, entry in enumerate(raw.env):
        name, sep, _ = entry.partition("=")
        if not sep or not _ENV_NAME.match(name):
            problems.add((*path, "env", index), f"must be NAME=value, got {entry!r}")

    return ModelConfig(
        id=model_id,
        cmd=cmd,
        cmd_stop=raw.cmd_stop if raw.cmd_stop.strip() else "",
        proxy=proxy,
        check_endpoint=check_endpoint,
        ttl=ttl,
        unload_timeout=unload_timeout,
        health_check_timeout=defaults.health_check_timeout,
        aliases=aliases,
        all_aliases=list(aliases),
        env=list(raw.env),
        name=raw.name.strip(),
        description=raw.description.strip(),
        unlisted=raw.unlisted,
        use_model_name=raw.use_model_name,
        concurrency_limit=concurrency,
        send_loading_state=(
            defaults.send_loading_state
            if raw.send_loading_state is None
            else raw.send_loading_state
        ),
        metadata=dict(raw.metadata),
        filters=build_filters(raw.filters, (*path, "filters"), problems),
        timeouts=build_timeouts(raw.timeouts, (*path, "timeouts"), problems),
        capabilities=_capabilities(raw.capabilities, (*path, "capabilities"), problems),
        ignore_websockets=ignore_websockets,
        resources=_resources(raw.resources, defaults.capacity, (*path, "resources"), problems),
        swappable=raw.swappable,
        persist_slots=raw.persist_slots,
        persist_slots_timeout=defaults.persist_slots_timeout,
        port=port,
    )


def _capabilities(
    raw: RawCapabilities | None, path: PathT, problems: Problems
) -> Capabilities | None:
    if raw is None:
        return None
    lists: dict[str, list[str]] = {}
    for key, values in (("in", raw.input), ("out", raw.output)):
        kept: list[str] = []
        for index, value in enumerate(values):
            if value not in MODALITIES:
                problems.add(
                    (*path, key, index),
                    f'invalid modality "{value}" (valid: {", ".join(MODALITIES)})',
                )
            elif value not in kept:
                kept.append(value)
        lists[key] = kept
    if raw.context < 0:
        problems.add((*path, "context"), f"must be >= 0, got {raw.context}")
    caps = Capabilities(
        input=lists["in"],
        output=lists["out"],
        tools=raw.tools,
        reranker=raw.reranker,
        context=max(raw.context, 0),
    )
    # An all-zero block means "not configured", as in llama-swap.
    return None if caps == Capabilities() else caps


def _resources(
    needs: dict[str, float], capacity: dict[str, float], path: PathT, problems: Problems
) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, amount in needs.items():
        where = (*path, name)
        if name not in capacity:
            problems.add(where, f"unknown resource '{name}': declare it in the top-level resources")
        elif amount < 0:
            problems.add(where, f"must be >= 0, got {amount:g}")
        elif amount > capacity[name]:
            problems.add(
                where,
                f"needs {amount:g} but the machine has only {capacity[name]:g} (resources.{name})",
            )
        else:
            out[name] = amount
    return out


def register_aliases(
    models: dict[str, ModelConfig], known_ids: set[str], problems: Problems
) -> tuple[dict[str, ModelConfig], dict[str, str]]:
    """Check alias uniqueness and add setParamsByID keys as aliases (§1.5, §1.7).

    Returns the models with `all_aliases` filled in and the alias -> model ID map.
    Models are visited in sorted ID order, so the later model reports a clash.
    """
    owner: dict[str, str] = {}
    for model_id in sorted(models):
        for index, alias in enumerate(models[model_id].aliases):
            if alias in owner:
                problems.add(
                    ("models", model_id, "aliases", index),
                    f"duplicate alias {alias} found in model: {model_id}",
                )
                continue
            owner[alias] = model_id
            if alias in known_ids:
                problems.warn(
                    ("models", model_id, "aliases", index),
                    f"alias '{alias}' is also a model ID; requests for it reach model '{alias}'",
                )
    updated: dict[str, ModelConfig] = {}
    for model_id in sorted(models):
        model = models[model_id]
        extra: list[str] = []
        for key in model.filters.set_params_by_id:
            if key == model_id:
                continue
            where = ("models", model_id, "filters", "setParamsByID", key)
            if key in known_ids:
                problems.add(where, f"key '{key}' conflicts with an existing model ID")
            elif key in owner:
                if owner[key] != model_id:
                    problems.add(
                        where,
                        f"duplicate alias '{key}' in model {model_id} filters.setParamsByID, "
                        f"already used by model {owner[key]}",
                    )
            else:
                owner[key] = model_id
                extra.append(key)
        updated[model_id] = model.model_copy(update={"all_aliases": [*model.aliases, *extra]})
    return updated, owner
