"""Typed names of the lifecycle specs, generated from spec/*.fsm.yaml: do not edit.

Regenerate with `llamaswap diagram`; `llamaswap diagram --check` (part of `make lint`)
fails when this file is stale. Code names states and events through these enums and
asks for tags (`PROCESS_HOLDS_RESOURCES`, ...) instead of listing states.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class ProcessState(StrEnum):
    """The states of spec/process.fsm.yaml."""

    STOPPED = "stopped"
    LAUNCHING = "launching"
    STARTING = "starting"
    RESTORING = "restoring"
    READY = "ready"
    SAVING = "saving"
    STOPPING = "stopping"
    RESTARTING = "restarting"
    ABORTING = "aborting"
    FAILED = "failed"
    SHUTTING_DOWN = "shutting_down"
    SHUTDOWN = "shutdown"


class ProcessEvent(StrEnum):
    """The events of spec/process.fsm.yaml."""

    START = "start"
    STOP = "stop"
    SHUT_DOWN = "shut_down"
    SPAWNED = "spawned"
    SPAWN_FAILED = "spawn_failed"
    HEALTHY = "healthy"
    HEALTH_TIMEOUT = "health_timeout"
    EXITED = "exited"
    SAVED = "saved"
    RESTORED = "restored"


class ProcessTag(StrEnum):
    """The state tags of spec/process.fsm.yaml."""

    HOLDS_RESOURCES = "holds_resources"
    SERVING = "serving"
    LOADING = "loading"
    UNLOADING = "unloading"
    ERROR = "error"
    FINAL = "final"


# a process exists or is being spawned: its memory and port are taken
PROCESS_HOLDS_RESOURCES: Final = frozenset(
    {
        ProcessState.LAUNCHING,
        ProcessState.STARTING,
        ProcessState.RESTORING,
        ProcessState.READY,
        ProcessState.SAVING,
        ProcessState.STOPPING,
        ProcessState.RESTARTING,
        ProcessState.ABORTING,
        ProcessState.SHUTTING_DOWN,
    }
)

# requests may be proxied to it
PROCESS_SERVING: Final = frozenset({ProcessState.READY})

# on its way to serving, without further commands
PROCESS_LOADING: Final = frozenset(
    {
        ProcessState.LAUNCHING,
        ProcessState.STARTING,
        ProcessState.RESTORING,
        ProcessState.RESTARTING,
    }
)

# on its way out: stopping, aborting or ending
PROCESS_UNLOADING: Final = frozenset(
    {
        ProcessState.SAVING,
        ProcessState.STOPPING,
        ProcessState.ABORTING,
        ProcessState.SHUTTING_DOWN,
    }
)

# the last start failed or the process crashed; the reason is kept
PROCESS_ERROR: Final = frozenset({ProcessState.FAILED})

# the process can never start again
PROCESS_FINAL: Final = frozenset({ProcessState.SHUTDOWN})

PROCESS_TAGGED: Final = {
    ProcessTag.HOLDS_RESOURCES: PROCESS_HOLDS_RESOURCES,
    ProcessTag.SERVING: PROCESS_SERVING,
    ProcessTag.LOADING: PROCESS_LOADING,
    ProcessTag.UNLOADING: PROCESS_UNLOADING,
    ProcessTag.ERROR: PROCESS_ERROR,
    ProcessTag.FINAL: PROCESS_FINAL,
}


class RouterState(StrEnum):
    """The states of spec/router.fsm.yaml."""

    ACCEPTING = "accepting"
    RELOADING = "reloading"
    DRAINING = "draining"
    SHUTDOWN = "shutdown"


class RouterEvent(StrEnum):
    """The events of spec/router.fsm.yaml."""

    RELOAD = "reload"
    RELOAD_DONE = "reload_done"
    DRAIN = "drain"
    DRAINED = "drained"


class RouterTag(StrEnum):
    """The state tags of spec/router.fsm.yaml."""

    ADMITS = "admits"
    HOLDS = "holds"
    CLOSED = "closed"


# new requests are scheduled at once
ROUTER_ADMITS: Final = frozenset({RouterState.ACCEPTING})

# new requests wait, admitted in arrival order once the reload is done
ROUTER_HOLDS: Final = frozenset({RouterState.RELOADING})

# new requests are refused
ROUTER_CLOSED: Final = frozenset({RouterState.DRAINING, RouterState.SHUTDOWN})

ROUTER_TAGGED: Final = {
    RouterTag.ADMITS: ROUTER_ADMITS,
    RouterTag.HOLDS: ROUTER_HOLDS,
    RouterTag.CLOSED: ROUTER_CLOSED,
}
