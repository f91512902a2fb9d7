"""Pieces shared by models and peers: URLs, filters, timeouts (§1.5, §1.7, §1.11)."""

from __future__ import annotations

from urllib.parse import urlsplit

from llamaswap.config.errors import PathT, Problems
from llamaswap.config.models import PROTECTED_PARAMS, Filters, Timeouts
from llamaswap.config.schema import RawFilters, RawPeerFilters, RawTimeouts


def url_problem(url: str) -> str | None:
    """Why `url` cannot be an upstream base URL, or None when it can."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        return str(exc)
    if parts.scheme not in ("http", "https"):
        return "scheme must be http or https"
    if not parts.hostname:
        return "missing host"
    return None


def strip_params(text: str) -> list[str]:
    """`"b, a,,model, a"` -> `["a", "b"]`: trimmed, no blanks, no dupes, no protected, sorted."""
    names = {part.strip() for part in text.split(",")}
    return sorted(name for name in names if name and name not in PROTECTED_PARAMS)


def build_filters(raw: RawPeerFilters, path: PathT, problems: Problems) -> Filters:
    set_params = dict(raw.set_params)
    for key in PROTECTED_PARAMS:
        if key in set_params:
            del set_params[key]
            problems.warn((*path, "setParams", key), f"'{key}' is protected and never set")
    by_id: dict[str, dict[str, object]] = {}
    if isinstance(raw, RawFilters):
        for requested, params in raw.set_params_by_id.items():
            cleaned = dict(params)
            for key in PROTECTED_PARAMS:
                if key in cleaned:
                    del cleaned[key]
                    problems.warn(
                        (*path, "setParamsByID", requested, key),
                        f"'{key}' is protected and never set",
                    )
            by_id[requested] = cleaned
    # The legacy `strip_params` spelling counts only when `stripParams` is empty.
    text = raw.strip_params or raw.strip_params_legacy
    return Filters(strip_params=strip_params(text), set_params=set_params, set_params_by_id=by_id)


def build_timeouts(
    raw: RawTimeouts, path: PathT, problems: Problems, *, response_header: float = 0
) -> Timeouts:
    defaults = Timeouts(response_header=response_header)
    values: dict[str, float] = {}
    for name, info in RawTimeouts.model_fields.items():
        value = getattr(raw, name)
        if value is None:
            continue
        if value < 0:
            problems.add((*path, info.alias or name), f"must be >= 0 (0 disables), got {value:g}")
            continue
        values[name] = value
    return defaults.model_copy(update=values)
