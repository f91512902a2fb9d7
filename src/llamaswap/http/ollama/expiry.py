"""When a loaded model will unload, for `/api/ps`'s `expires_at`.

The exact deadline lives in the scheduler: idle since when, and the limit that applies
(the last finished request's keep-alive, else the configured ttl). Neither the router
nor the scheduler exposes it publicly yet, so this adapter reads the scheduler's
private state read-only (`_idle_since`, `_limit_of`) and, should those ever change,
falls back to the configured ttl counted from now. A model with requests in flight, or
still loading, gets its limit counted from now: its idle time has not started. A model
that never unloads gets Ollama's "forever" (now plus the largest Go duration).
"""

from __future__ import annotations

import time
from typing import Any

from llamaswap.config import ModelConfig
from llamaswap.runtime.router import RouterActor

FOREVER_SECONDS = (2**63 - 1) / 1e9  # Go's time.Duration(math.MaxInt64)


def _scheduler_view(router: RouterActor, model: str) -> tuple[float | None, float | None] | None:
    """(idle since, limit) from the scheduler, or None if its internals are not there."""
    scheduler: Any = getattr(router, "_scheduler", None)
    try:
        limit = scheduler._limit_of(model)
        since = scheduler._idle_since.get(model)
    except (AttributeError, TypeError):
        return None
    return since, limit


def expires_at(router: RouterActor, model: ModelConfig) -> float:
    """Wall-clock time (epoch seconds) at which `model` is due to unload."""
    now_wall, now = time.time(), time.monotonic()
    view = _scheduler_view(router, model.id)
    if view is None:
        limit: float | None = float(model.ttl) if model.ttl > 0 and model.swappable else None
        since = None
    else:
        since, limit = view
    if limit is None:
        return now_wall + FOREVER_SECONDS
    if since is None:
        return now_wall + limit
    return now_wall + (since + limit - now)
