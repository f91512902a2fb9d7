"""The filters of `/api/metrics/activity`, parsed as llama-swap's `parseActivityQuery` does.

`model` repeats (`?model=a&model=b`); `start`/`end` are RFC 3339 times (inclusive, whole
seconds, as the rows keep them); `min_id`/`max_id` inclusive; `limit` 1-999 (default 25);
`page` from 1; `sort` one of `SORT_COLUMNS`; `order` `asc` or `desc` (default `desc`).
A bad value is a `BadFilter` naming its field, which the route answers with a 400.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

DEFAULT_LIMIT = 25
MAX_LIMIT = 999

# API key -> SQL column: the whitelist keeps user input out of the SQL text.
SORT_COLUMNS = {
    "id": "id",
    "time": "ts_created",
    "model": "model_id",
    "req_path": "req_path",
    "resp_status_code": "resp_status_code",
    "resp_content_type": "resp_content_type",
    "cached": "cache_tokens",
    "prompt": "input_tokens",
    "generated": "output_tokens",
    "drafted": "draft_tokens",
    "prompt_speed": "prompt_per_second",
    "gen_speed": "tokens_per_second",
    "duration": "duration_ms",
}

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


class BadFilter(ValueError):
    """A query parameter that cannot be used; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ActivityFilter:
    models: tuple[str, ...] = ()
    start: int | None = None  # Unix seconds, inclusive
    end: int | None = None
    min_id: int | None = None
    max_id: int | None = None

    def where(self) -> tuple[str, list[object]]:
        """A parameterised WHERE clause (empty when nothing is filtered)."""
        conditions: list[str] = []
        args: list[object] = []
        if self.models:
            conditions.append(f"model_id IN ({', '.join('?' * len(self.models))})")
            args.extend(self.models)
        for column, op, value in (
            ("ts_created", ">=", self.start),
            ("ts_created", "<=", self.end),
            ("id", ">=", self.min_id),
            ("id", "<=", self.max_id),
        ):
            if value is not None:
                conditions.append(f"{column} {op} ?")
                args.append(value)
        return (" WHERE " + " AND ".join(conditions) if conditions else ""), args


@dataclass(frozen=True)
class ActivityQuery:
    filter: ActivityFilter = field(default_factory=ActivityFilter)
    limit: int = DEFAULT_LIMIT
    page: int = 1
    sort: str = "id"
    order: str = "desc"

    def order_by(self) -> str:
        column = SORT_COLUMNS.get(self.sort, "id")
        direction = "ASC" if self.order == "asc" else "DESC"
        if column == "id":
            return f" ORDER BY id {direction}"
        return f" ORDER BY {column} {direction}, id {direction}"


def _one(params: Mapping[str, Sequence[str]], name: str) -> str:
    values = params.get(name) or ()
    return values[0].strip() if values else ""


def _time(params: Mapping[str, Sequence[str]], name: str) -> int | None:
    raw = _one(params, name)
    if not raw:
        return None
    if not RFC3339.match(raw):
        raise BadFilter(name, f"invalid '{name}' timestamp, use RFC3339 format")
    moment = datetime.fromisoformat(raw.upper().replace("Z", "+00:00"))
    return int(moment.timestamp() // 1)


def _row_id(params: Mapping[str, Sequence[str]], name: str) -> int | None:
    raw = _one(params, name)
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise BadFilter(name, f"{name} must be >= 1")
    return value


def parse_filter(params: Mapping[str, Sequence[str]]) -> ActivityFilter:
    models = tuple(m.strip() for m in params.get("model", ()) if m.strip())
    start, end = _time(params, "start"), _time(params, "end")
    if start is not None and end is not None and start > end:
        raise BadFilter("start", "start must be before end")
    min_id, max_id = _row_id(params, "min_id"), _row_id(params, "max_id")
    if min_id is not None and max_id is not None and min_id > max_id:
        raise BadFilter("min_id", "min_id must be <= max_id")
    return ActivityFilter(models, start, end, min_id, max_id)


def parse_query(params: Mapping[str, Sequence[str]]) -> ActivityQuery:
    """The query a request's parameters ask for (`params`: name -> all its values)."""
    activity_filter = parse_filter(params)
    limit, page, sort, order = DEFAULT_LIMIT, 1, "id", "desc"
    if raw := _one(params, "limit"):
        try:
            limit = int(raw)
        except ValueError:
            raise BadFilter("limit", "invalid limit") from None
        if not 0 < limit <= MAX_LIMIT:
            raise BadFilter("limit", f"limit must be between 1 and {MAX_LIMIT}")
    if raw := _one(params, "page"):
        try:
            page = int(raw)
        except ValueError:
            page = 0
        if page < 1:
            raise BadFilter("page", "page must be >= 1")
    if raw := _one(params, "sort"):
        if raw not in SORT_COLUMNS:
            raise BadFilter("sort", "invalid sort column")
        sort = raw
    if raw := _one(params, "order"):
        if raw.lower() not in ("asc", "desc"):
            raise BadFilter("order", "order must be asc or desc")
        order = raw.lower()
    return ActivityQuery(activity_filter, limit, page, sort, order)
