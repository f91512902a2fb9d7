"""A short, stable, non-secret name for an API key, for the activity rows.

The first 8 hex digits of the key's SHA-256: the same key gets the same id across
restarts and config reloads, different keys practically never share one, and the id
cannot be turned back into the key (unlike a prefix of the key itself would be).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache


@lru_cache(maxsize=256)
def key_id(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:8]
