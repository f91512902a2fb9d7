"""The activity store: metered requests in SQLite, captures in memory (see activity.py)."""

from .activity import ActivityStore
from .captures import CaptureTail
from .keys import key_id
from .query import ActivityFilter, ActivityQuery, BadFilter, parse_filter, parse_query

__all__ = [
    "ActivityFilter",
    "ActivityQuery",
    "ActivityStore",
    "BadFilter",
    "CaptureTail",
    "key_id",
    "parse_filter",
    "parse_query",
]
