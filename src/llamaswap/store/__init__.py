"""The activity store: metered requests in SQLite, captures in memory (see activity.py)."""

from .activity import ActivityStore
from .captures import CaptureTail
from .query import ActivityFilter, ActivityQuery, BadFilter, parse_filter, parse_query

__all__ = [
    "ActivityFilter",
    "ActivityQuery",
    "ActivityStore",
    "BadFilter",
    "CaptureTail",
    "parse_filter",
    "parse_query",
]
