"""When a loaded model will unload, for `/api/ps`'s `expires_at`.

The scheduler knows: idle since when, and the limit that applies (the last finished
request's keep-alive, else the configured ttl). A model with requests in flight, or
still loading, gets its limit counted from now: its idle time has not started. A model
that never unloads gets Ollama's "forever" (now plus the largest Go duration).
"""

from __future__ import annotations

import time

from llamaswap.config import ModelConfig
from llamaswap.runtime.router import RouterActor

FOREVER_SECONDS = (2**63 - 1) / 1e9  # Go's time.Duration(math.MaxInt64)


def expires_at(router: RouterActor, model: ModelConfig) -> float:
    """Wall-clock time (epoch seconds) at which `model` is due to unload."""
    now_wall, now = time.time(), time.monotonic()
    since, limit = router.idle_deadline(model.id)
    if limit is None:
        return now_wall + FOREVER_SECONDS
    if since is None:
        return now_wall + limit
    return now_wall + (since + limit - now)
