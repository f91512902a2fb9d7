"""Typed shapes of the YAML as written (after macro expansion), before defaults are applied.

These models only check types; what values mean (effective TTLs, default groups,
aliases...) is worked out in `build`. Field aliases are the YAML keys. A `null`
value counts as "not written", as it does for yaml.v3 scalars. Extra keys are kept
(`model_extra`) so the loader can warn about them; the top level ignores them,
because llama-swap silently ignores unknown top-level keys.

`decode` turns pydantic's errors into config problems with a path and line, and
retries without the offending keys so the rest of the section is still checked.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from llamaswap.config.errors import PathT, Problems
from llamaswap.config.macros import go_format


def _scalar_text(value: Any) -> Any:
    # yaml.v3 decodes `name: 123` into a string field as "123"; pydantic would not.
    if isinstance(value, bool | int | float):
        return go_format(value)
    return value


def _reject_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")
    return value


YStr = Annotated[str, BeforeValidator(_scalar_text)]
YInt = Annotated[int, BeforeValidator(_reject_bool)]
YNum = Annotated[float, BeforeValidator(_reject_bool)]


class Section(BaseModel):
    """A YAML mapping: keys by their YAML name, nulls dropped, unknown keys kept."""

    model_config = ConfigDict(extra="allow", validate_by_alias=True, validate_by_name=False)

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_absent(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data


class RawTimeouts(Section):
    connect: YNum | None = None
    keepalive: YNum | None = None
    response_header: YNum | None = Field(None, alias="responseHeader")
    tls_handshake: YNum | None = Field(None, alias="tlsHandshake")
    expect_continue: YNum | None = Field(None, alias="expectContinue")
    idle_conn: YNum | None = Field(None, alias="idleConn")


class RawCapabilities(Section):
    input: list[YStr] = Field(default_factory=list, alias="in")
    output: list[YStr] = Field(default_factory=list, alias="out")
    tools: bool = False
    reranker: bool = False
    context: YInt = 0


class RawPeerFilters(Section):
    strip_params: YStr = Field("", alias="stripParams")
    strip_params_legacy: YStr = Field("", alias="strip_params")
    set_params: dict[str, Any] = Field(default_factory=dict, alias="setParams")


class RawFilters(RawPeerFilters):
    set_params_by_id: dict[str, dict[str, Any]] = Field(default_factory=dict, alias="setParamsByID")


class RawCompat(Section):
    ignore_websockets: bool = Field(False, alias="ignoreWebsockets")


class RawModel(Section):
    cmd: YStr = ""
    cmd_stop: YStr = Field("", alias="cmdStop")
    proxy: YStr = ""
    check_endpoint: YStr = Field("/health", alias="checkEndpoint")
    ttl: YInt = -1
    unload_timeout: YInt = Field(0, alias="unloadTimeout")
    aliases: list[YStr] = Field(default_factory=list)
    env: list[YStr] = Field(default_factory=list)
    name: YStr = ""
    description: YStr = ""
    unlisted: bool = False
    use_model_name: YStr = Field("", alias="useModelName")
    concurrency_limit: YInt = Field(0, alias="concurrencyLimit")
    send_loading_state: bool | None = Field(None, alias="sendLoadingState")
    metadata: dict[str, Any] = Field(default_factory=dict)
    filters: RawFilters = Field(default_factory=RawFilters)
    timeouts: RawTimeouts = Field(default_factory=RawTimeouts)
    capabilities: RawCapabilities | None = None
    compat: RawCompat = Field(default_factory=RawCompat)
    resources: dict[str, YNum] = Field(default_factory=dict)
    swappable: bool = True  # ours (llama-swap #1127): false = never evicted to make room
    persist_slots: bool = Field(True, alias="persistSlots")  # ours: with --slot-save-path


class RawPeer(Section):
    proxy: YStr = ""
    api_key: YStr = Field("", alias="apiKey")
    models: list[YStr] = Field(default_factory=list)
    filters: RawPeerFilters = Field(default_factory=RawPeerFilters)
    timeouts: RawTimeouts = Field(default_factory=RawTimeouts)


class RawGroup(Section):
    swap: bool = True
    exclusive: bool = True
    persistent: bool = False
    members: list[YStr] = Field(default_factory=list)


class RawMatrix(Section):
    vars: dict[str, YStr] = Field(default_factory=dict)
    evict_costs: dict[str, YInt] = Field(default_factory=dict)
    sets: dict[str, YStr] = Field(default_factory=dict)


class RawRouterSettings(Section):
    groups: dict[str, Any] = Field(default_factory=dict)
    matrix: dict[str, Any] | None = None


class RawRouter(Section):
    use: YStr = ""
    settings: RawRouterSettings = Field(default_factory=RawRouterSettings)


class RawFifo(Section):
    priority: dict[str, YInt] = Field(default_factory=dict)
    max_wait_seconds: YNum = Field(60.0, alias="maxWaitSeconds")


class RawSchedulerSettings(Section):
    fifo: RawFifo = Field(default_factory=RawFifo)


class RawScheduler(Section):
    use: YStr = ""
    settings: RawSchedulerSettings = Field(default_factory=RawSchedulerSettings)


class RawRouting(Section):
    router: RawRouter = Field(default_factory=RawRouter)
    scheduler: RawScheduler = Field(default_factory=RawScheduler)


class RawProfile(Section):
    description: YStr = ""
    pins: dict[str, YStr | None] = Field(default_factory=dict)


class RawSelectorSettings(Section):
    spillover: YInt = 1


class RawSelector(Section):
    strategy: YStr = ""
    targets: list[YStr] = Field(default_factory=list)
    settings: RawSelectorSettings = Field(default_factory=RawSelectorSettings)
    name: YStr = ""
    description: YStr = ""
    unlisted: bool = False
    metadata: dict[str, Any] = Field(default_factory=dict)


class RawOnStartup(Section):
    preload: list[YStr] = Field(default_factory=list)


class RawHooks(Section):
    on_startup: RawOnStartup = Field(default_factory=RawOnStartup)


class RawUpstream(Section):
    ignore_paths: list[YStr] = Field(default_factory=list, alias="ignorePaths")


class RawPerformance(Section):
    disabled: bool = False
    every: YStr | None = None


class RawStore(Section):
    path: YStr = ""
    # ours: retention of the activity store (store/); 0 / absent = no limit of that kind
    max_rows: YInt = Field(100_000, alias="maxRows")
    max_age: YStr | None = Field(None, alias="maxAge")


class RawUIActivity(Section):
    session_id: list[YStr] | None = None


class RawUI(Section):
    activity: RawUIActivity = Field(default_factory=RawUIActivity)


class RawResource(Section):
    """A resource with a probe of what is free now (ours); a plain number is the capacity."""

    capacity: YNum
    probe: YStr = ""  # "nvidia" (NVML, MiB) or a command printing the amount free now
    probe_timeout: YNum = Field(5.0, alias="probeTimeout")  # seconds one probe may take
    recovery_timeout: YNum = Field(10.0, alias="recoveryTimeout")  # wait for memory back


def _api_key_value(value: Any) -> Any:
    """A key (scalars read as text, as yaml.v3 does) or a mapping with a key and a scope."""
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        raise ValueError("must be a string, got a list")
    return _scalar_text(value)


ApiKeyValue = Annotated[Any, BeforeValidator(_api_key_value)]


def _resource_value(value: Any) -> Any:
    """A capacity (a number) or a mapping with a capacity and a probe, nothing else."""
    if isinstance(value, dict):
        return RawResource.model_validate(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number (or capacity and probe), got {value!r}")
    return float(value)


ResourceValue = Annotated[float | RawResource, BeforeValidator(_resource_value)]


class RawTop(Section):
    """Every known top-level key except `macros` and `models` (handled separately)."""

    model_config = ConfigDict(extra="ignore")

    health_check_timeout: YInt = Field(120, alias="healthCheckTimeout")
    log_level: YStr = Field("info", alias="logLevel")
    log_time_format: YStr = Field("", alias="logTimeFormat")
    log_to_stdout: YStr = Field("proxy", alias="logToStdout")
    log_requests: bool = Field(False, alias="logRequests")
    metrics_max_in_memory: YInt = Field(1000, alias="metricsMaxInMemory")
    capture_buffer: YInt = Field(5, alias="captureBuffer")
    start_port: YInt = Field(5800, alias="startPort")
    send_loading_state: bool = Field(False, alias="sendLoadingState")
    include_aliases_in_list: bool = Field(False, alias="includeAliasesInList")
    global_ttl: YInt = Field(0, alias="globalTTL")
    unload_timeout: YInt = Field(10, alias="unloadTimeout")
    client_write_timeout: YNum = Field(60.0, alias="clientWriteTimeout")
    persist_slots_timeout: YNum = Field(30.0, alias="persistSlotsTimeout")
    api_keys: list[ApiKeyValue] = Field(default_factory=list, alias="apiKeys")
    # ours: limits and cross-site rules of llamaswap's own HTTP server (config/serving.py)
    request_header_timeout: YNum = Field(10.0, alias="requestHeaderTimeout")
    max_connections: YInt = Field(1000, alias="maxConnections")
    allowed_origins: list[YStr] = Field(default_factory=list, alias="allowedOrigins")
    trusted_proxies: list[YStr] = Field(default_factory=list, alias="trustedProxies")
    profiles: dict[str, Any] = Field(default_factory=dict)
    selectors: dict[str, Any] = Field(default_factory=dict)
    hooks: RawHooks = Field(default_factory=RawHooks)
    routing: RawRouting = Field(default_factory=RawRouting)
    groups: dict[str, Any] | None = None
    matrix: dict[str, Any] | None = None
    peers: dict[str, Any] = Field(default_factory=dict)
    upstream: RawUpstream = Field(default_factory=RawUpstream)
    performance: RawPerformance = Field(default_factory=RawPerformance)
    store: RawStore | None = None
    ui: RawUI = Field(default_factory=RawUI)
    resources: dict[str, ResourceValue] = Field(default_factory=dict)


# Keys `RawTop` knows, plus the two handled outside it: used to decide which
# top-level values macro leftovers are reported in.
TOP_LEVEL_KEYS: frozenset[str] = frozenset(
    [*(f.alias or name for name, f in RawTop.model_fields.items()), "macros", "models"]
)
MODEL_KEYS: frozenset[str] = frozenset(
    [*(f.alias or name for name, f in RawModel.model_fields.items()), "macros"]
)

S = TypeVar("S", bound=Section)


def _describe(error: Any) -> str:
    kind = error["type"]
    value = error.get("input")
    shown = _show(value)
    if kind == "missing":
        return "is required"
    if kind in ("int_type", "int_parsing"):
        return f"must be an integer, got {shown}"
    if kind == "int_from_float":
        return f"must be a whole number, got {shown}"
    if kind in ("float_type", "float_parsing"):
        return f"must be a number, got {shown}"
    if kind in ("bool_type", "bool_parsing"):
        return f"must be true or false, got {shown}"
    if kind == "string_type":
        return f"must be a string, got {shown}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping, got {shown}"
    if kind == "list_type":
        return f"must be a list, got {shown}"
    message = str(error.get("msg", "invalid value"))
    return message.removeprefix("Value error, ")


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    text = repr(value) if isinstance(value, str) else go_format(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _without(data: Any, loc: tuple[str | int, ...]) -> Any:
    """`data` with the value at `loc` removed: the deepest mapping key on the way.

    A bad list item takes its whole list with it (indices would shift otherwise).
    """
    if not loc or not isinstance(data, dict) or loc[0] not in data:
        return data
    key, rest = loc[0], loc[1:]
    inner = data[key]
    if rest and isinstance(inner, dict) and rest[0] in inner:
        return {**data, key: _without(inner, rest)}
    return {k: v for k, v in data.items() if k != key}


def decode(cls: type[S], data: Any, path: PathT, problems: Problems) -> S:
    """Validate `data` as `cls`, reporting every type error with its path.

    On errors the offending values are removed and validation retried, so a bad value
    still lets the rest of the section be used by later checks (the config is
    rejected either way) without a second error caused by the first.
    """
    if data is None:
        data = {}
    reported = False
    for _ in range(8):  # each retry removes at least one value; nesting is shallow
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            if not isinstance(data, dict):
                if not reported:
                    for error in exc.errors():
                        problems.add(path, _describe(error))
                return cls.model_validate({})
            for error in exc.errors():
                loc = tuple(part for part in error["loc"] if isinstance(part, str | int))
                if not reported:
                    problems.add(path + loc, _describe(error))
                data = _without(data, loc)
            reported = True
    return cls.model_validate({})  # pragma: no cover - unreachable with sane nesting


def warn_unknown_keys(section: Section, path: PathT, problems: Problems) -> None:
    """Warn about keys a section does not know, recursively through its subsections."""
    known = [info.alias or name for name, info in type(section).model_fields.items()]
    for key in section.model_extra or {}:
        problems.unknown_key((*path, key), known)
    for name, info in type(section).model_fields.items():
        value = getattr(section, name)
        if isinstance(value, Section):
            warn_unknown_keys(value, (*path, info.alias or name), problems)
