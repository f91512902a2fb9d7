"""API keys with scopes (ours; llama-swap #971, #972, #653).

`apiKeys` entries may be plain strings (full access, as in llama-swap) or objects:

    - key: "${env.TEAM_KEY}"
      name: team                 # recorded in activity and metrics; never the key itself
      models: [qwen-*, embed]    # glob patterns over model IDs and aliases; others: 403
      admin: false               # no unload/load/profile/log routes
      concurrencyLimit: 4        # this key's requests waiting or in flight; over: 429

A key without a `name` is named `key-` and the first characters of its SHA-256, so
activity and metrics can tell keys apart without showing them.
"""

from __future__ import annotations

import hashlib
import re
from fnmatch import fnmatchcase

from pydantic import BaseModel, ConfigDict

from .errors import PathT, Problems

NAME = re.compile(r"^[A-Za-z0-9._-]+$")


class KeyScope(BaseModel):
    """What one API key may do."""

    model_config = ConfigDict(frozen=True)

    name: str
    models: tuple[str, ...] = ("*",)
    admin: bool = True
    concurrency_limit: int = 0  # 0: no limit of its own

    def allows(self, *names: str) -> bool:
        """May this key use the model known by any of `names` (its ID, an alias)?"""
        return any(fnmatchcase(name, pattern) for name in names for pattern in self.models)


def default_name(key: str) -> str:
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:8]


def build_keys(entries: list[object], problems: Problems) -> dict[str, KeyScope]:
    """key -> scope for every valid entry of `apiKeys`; problems name the entry."""
    scopes: dict[str, KeyScope] = {}
    names: dict[str, int] = {}
    for index, entry in enumerate(entries):
        path: PathT = ("apiKeys", index)
        if isinstance(entry, str):
            key, scope = entry, {}
        elif isinstance(entry, dict):
            key, scope = str(entry.get("key", "")), entry
            unknown = sorted(set(entry) - {"key", "name", "models", "admin", "concurrencyLimit"})
            for name in unknown:
                problems.add((*path, name), f"unknown key {name!r} in an API key entry")
        else:
            problems.add(path, "must be a key or a mapping with key, name, models, admin")
            continue
        if not key.strip():
            problems.add(path, "empty api key found in apiKeys")
            continue
        if " " in key:
            problems.add(path, "api key cannot contain spaces")
            continue
        built = _scope(key, scope, path, problems)
        if built is None:
            continue
        if built.name in names:
            earlier = names[built.name]
            problems.add((*path, "name"), f"name {built.name!r} is used by entry {earlier} too")
            continue
        names[built.name] = index
        scopes[key] = built
    return scopes


def _scope(key: str, raw: dict[str, object], path: PathT, problems: Problems) -> KeyScope | None:
    ok = True
    name = str(raw.get("name") or default_name(key))
    if not NAME.match(name):
        problems.add((*path, "name"), f"must be letters, digits, '.', '_' or '-', got {name!r}")
        ok = False
    models = raw.get("models", ["*"])
    if isinstance(models, str):
        models = [models]
    if (
        not isinstance(models, list)
        or not models
        or not all(isinstance(m, str) and m.strip() for m in models)
    ):
        problems.add((*path, "models"), "must be a list of model IDs or glob patterns")
        ok = False
    admin = raw.get("admin", True)
    if not isinstance(admin, bool):
        problems.add((*path, "admin"), f"must be true or false, got {admin!r}")
        ok = False
    limit = raw.get("concurrencyLimit", 0)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        problems.add((*path, "concurrencyLimit"), f"must be an integer >= 0, got {limit!r}")
        ok = False
    if not ok:
        return None
    assert isinstance(models, list) and isinstance(admin, bool) and isinstance(limit, int)
    return KeyScope(
        name=name, models=tuple(m.strip() for m in models), admin=admin, concurrency_limit=limit
    )
