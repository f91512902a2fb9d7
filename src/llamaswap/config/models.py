"""The loaded config as the rest of llamaswap sees it.

Every value here is *effective*: defaults, globals and llama-swap's special cases are
already applied (a model's `ttl` of -1 is already the global TTL, a concurrency limit
of 0 is already 10), so runtime code reads values and never re-derives them. Models
are frozen; attribute names are snake_case and the YAML camelCase keys are aliases.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
)

from llamaswap.config.keys import KeyScope
from llamaswap.config.shell import split_command
from llamaswap.matrix import MatrixProgram

DEFAULT_GROUP = "(default)"
PROTECTED_PARAMS = ("model",)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")


class Timeouts(_Frozen):
    """Upstream HTTP transport timeouts in seconds; 0 means no timeout."""

    connect: float = 30
    keepalive: float = 30
    response_header: float = Field(0, alias="responseHeader")
    tls_handshake: float = Field(10, alias="tlsHandshake")
    expect_continue: float = Field(1, alias="expectContinue")
    idle_conn: float = Field(90, alias="idleConn")


class Capabilities(_Frozen):
    input: list[str] = Field(default_factory=list, alias="in")
    output: list[str] = Field(default_factory=list, alias="out")
    tools: bool = False
    reranker: bool = False
    context: int = 0


class Filters(_Frozen):
    """Request body rewrites. `strip_params` is sorted, deduplicated and never holds
    `model`; `set_params*` never set `model`."""

    strip_params: list[str] = Field(default_factory=list, alias="stripParams")
    set_params: dict[str, Any] = Field(default_factory=dict, alias="setParams")
    set_params_by_id: dict[str, dict[str, Any]] = Field(default_factory=dict, alias="setParamsByID")


class ResourceProbe(_Frozen):
    """How to measure what is free of a resource now: `nvidia` or a command (ours)."""

    probe: str
    timeout: float = 5.0
    recovery: float = 10.0  # how long to wait for memory to come back after a stop


class ModelConfig(_Frozen):
    id: str
    cmd: str
    cmd_stop: str = Field("", alias="cmdStop")
    proxy: str
    check_endpoint: str = Field("/health", alias="checkEndpoint")
    ttl: int = 0
    unload_timeout: int = Field(10, alias="unloadTimeout")
    health_check_timeout: int = Field(120, alias="healthCheckTimeout")
    aliases: list[str] = Field(default_factory=list)
    all_aliases: list[str] = Field(default_factory=list, alias="allAliases")
    env: list[str] = Field(default_factory=list)
    name: str = ""
    description: str = ""
    unlisted: bool = False
    use_model_name: str = Field("", alias="useModelName")
    concurrency_limit: int = Field(10, alias="concurrencyLimit")
    send_loading_state: bool = Field(False, alias="sendLoadingState")
    metadata: dict[str, Any] = Field(default_factory=dict)
    filters: Filters = Field(default_factory=Filters)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    capabilities: Capabilities | None = None
    ignore_websockets: bool = Field(False, alias="ignoreWebsockets")
    resources: dict[str, float] = Field(default_factory=dict)
    swappable: bool = True
    persist_slots: bool = Field(True, alias="persistSlots")
    persist_slots_timeout: float = Field(30.0, alias="persistSlotsTimeout")
    port: int | None = None

    @property
    def health_check_disabled(self) -> bool:
        """`checkEndpoint: none`: the model is ready as soon as it is spawned."""
        return self.check_endpoint == "none"

    def args(self) -> list[str]:
        """`cmd` as argv (never run through a shell)."""
        return split_command(self.cmd)

    def stop_args(self, pid: int) -> list[str] | None:
        """`cmdStop` as argv with `${PID}` filled in, or None when SIGTERM should be used."""
        if not self.cmd_stop.strip():
            return None
        return split_command(self.cmd_stop.replace("${PID}", str(pid)))


class PeerConfig(_Frozen):
    id: str
    proxy: str
    api_key: str = Field("", alias="apiKey")
    models: list[str] = Field(default_factory=list)
    filters: Filters = Field(default_factory=Filters)
    timeouts: Timeouts = Field(default_factory=lambda: Timeouts(response_header=60))

    def fqns(self) -> list[str]:
        """`<peer>/<model>` for every model, the names that always reach this peer."""
        return [f"{self.id}/{model}" for model in self.models]


class GroupConfig(_Frozen):
    name: str
    swap: bool = True
    exclusive: bool = True
    persistent: bool = False
    members: list[str] = Field(default_factory=list)
    yaml_path: str = Field("", alias="yamlPath")


class MatrixSet(_Frozen):
    """A set as written. `alternatives` lists it for people when it is small (None past
    `LISTED_COMBINATIONS`); decisions never read it, they ask `MatrixConfig.program`."""

    name: str
    dsl: str
    alternatives: list[frozenset[str]] | None = None
    combinations: int = 0  # alternatives the expression spells out, repeats included
    yaml_path: str = Field("", alias="yamlPath")

    @model_serializer(mode="wrap")
    def _listed_or_counted(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if self.alternatives is None:
            data.pop("alternatives", None)
        else:
            data.pop("combinations", None)
            data["alternatives"] = [sorted(alternative) for alternative in self.alternatives]
        return data


class MatrixConfig(_Frozen):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    vars: dict[str, str] = Field(default_factory=dict)
    sets: list[MatrixSet] = Field(default_factory=list)
    evict_costs: dict[str, int] = Field(default_factory=dict)
    # The compiled sets, solved symbolically (never expanded); not part of the printout.
    program: MatrixProgram = Field(default_factory=MatrixProgram, exclude=True, repr=False)


class RoutingConfig(_Frozen):
    router: Literal["group", "matrix", "fit"] = "group"
    groups: dict[str, GroupConfig] = Field(default_factory=dict)
    matrix: MatrixConfig | None = None
    scheduler: Literal["fifo"] = "fifo"
    # Keys as written. llama-swap accepts alias keys but looks priorities up by real
    # model ID, so an alias key never matches; kept that way for compatibility.
    priorities: dict[str, int] = Field(default_factory=dict)
    max_wait_seconds: float = Field(60.0, alias="maxWaitSeconds")

    def priority(self, model_id: str) -> int:
        return self.priorities.get(model_id, 0)

    def group_of(self, model_id: str) -> GroupConfig | None:
        for group in self.groups.values():
            if model_id in group.members:
                return group
        return None


class ProfileConfig(_Frozen):
    name: str
    description: str = ""
    # requested name -> target; "" disables the name (404 while the profile is active)
    pins: dict[str, str] = Field(default_factory=dict)


class SelectorConfig(_Frozen):
    id: str
    strategy: Literal["warm", "pin", "spillover"]
    targets: list[str] = Field(default_factory=list)
    # Each target resolved: a local model ID or a peer's `<peer>/<model>`.
    resolved_targets: list[str] = Field(default_factory=list, alias="resolvedTargets")
    spillover: int = 1
    name: str = ""
    description: str = ""
    unlisted: bool = False
    metadata: dict[str, Any] = Field(default_factory=dict)


class Config(_Frozen):
    health_check_timeout: int = Field(120, alias="healthCheckTimeout")
    log_level: str = Field("info", alias="logLevel")
    log_time_format: str = Field("", alias="logTimeFormat")
    log_to_stdout: str = Field("proxy", alias="logToStdout")
    metrics_max_in_memory: int = Field(1000, alias="metricsMaxInMemory")
    capture_buffer: int = Field(5, alias="captureBuffer")
    start_port: int = Field(5800, alias="startPort")
    send_loading_state: bool = Field(False, alias="sendLoadingState")
    include_aliases_in_list: bool = Field(False, alias="includeAliasesInList")
    global_ttl: int = Field(0, alias="globalTTL")
    unload_timeout: int = Field(10, alias="unloadTimeout")
    # Seconds a client may accept no byte of a streamed answer before it is cut (0: never).
    client_write_timeout: float = Field(60.0, alias="clientWriteTimeout")
    api_keys: list[str] = Field(default_factory=list, alias="apiKeys")
    key_scopes: dict[str, KeyScope] = Field(default_factory=dict, alias="keyScopes")
    # ours: llamaswap's own HTTP server (see config/serving.py)
    request_header_timeout: float = Field(10.0, alias="requestHeaderTimeout")  # 0 = none
    max_connections: int = Field(1000, alias="maxConnections")  # 0 = no cap
    allowed_origins: list[str] = Field(default_factory=list, alias="allowedOrigins")
    trusted_proxies: list[str] = Field(default_factory=list, alias="trustedProxies")
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    profiles: dict[str, ProfileConfig] = Field(default_factory=dict)
    selectors: dict[str, SelectorConfig] = Field(default_factory=dict)
    preload: list[str] = Field(default_factory=list)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    peers: dict[str, PeerConfig] = Field(default_factory=dict)
    ignore_paths: list[str] = Field(default_factory=list, alias="ignorePaths")
    performance_disabled: bool = Field(False, alias="performanceDisabled")
    performance_every: float = Field(5.0, alias="performanceEvery")
    store_path: str | None = Field(None, alias="storePath")
    # ours: activity store retention (rows kept, seconds kept; 0 = no limit)
    store_max_rows: int = Field(100_000, alias="storeMaxRows")
    store_max_age: float = Field(0.0, alias="storeMaxAge")
    ui_session_headers: list[str] = Field(default_factory=list, alias="uiSessionHeaders")
    resources: dict[str, float] = Field(default_factory=dict)
    probes: dict[str, ResourceProbe] = Field(default_factory=dict)  # resource -> its probe
    warnings: list[str] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)

    @cached_property
    def _alias_map(self) -> dict[str, str]:
        return {alias: m.id for m in self.models.values() for alias in m.all_aliases}

    def aliases(self) -> dict[str, str]:
        """Every alias (configured and setParamsByID keys) -> its model ID."""
        return dict(self._alias_map)

    def resolve(self, name: str) -> str | None:
        """A model ID or alias -> the model ID (IDs win over aliases); None if unknown."""
        if name in self.models:
            return name
        return self._alias_map.get(name)

    def peer_model(self, name: str) -> tuple[str, str] | None:
        """A peer FQN `<peer>/<model>`, or a bare model only one peer lists ->
        (peer ID, model). Local IDs and aliases are not consulted (they win elsewhere)."""
        matches = {
            (p.id, m) for p in self.peers.values() for m in p.models if f"{p.id}/{m}" == name
        }
        if not matches:
            matches = {(p.id, m) for p in self.peers.values() for m in p.models if m == name}
        return next(iter(matches)) if len(matches) == 1 else None
