"""The activity table in SQLite: llama-swap's schema, plus `method` and `key_id`.

Synchronous on purpose: every call runs in the store's worker thread (one at a time,
`ActivityStore` serialises them), never on the event loop. The table and columns are
llama-swap's (`internal/store/migrations/00001_create_activity.sql`), so a llama-swap
store file can be opened as is; our two columns are added when missing. A file gets WAL
journalling (readers never block the writer) and `synchronous=NORMAL` (a commit is not
an fsync; a power cut may lose the last commits, never corrupt the file).
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from llamaswap.config import Config

from . import needs
from .query import ActivityFilter, ActivityQuery
from .stats import histogram

SCHEMA = """
CREATE TABLE IF NOT EXISTS activity (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_created INTEGER NOT NULL,
    model_id TEXT NOT NULL,
    req_path TEXT NOT NULL DEFAULT '',
    resp_content_type TEXT NOT NULL DEFAULT '',
    resp_status_code INTEGER NOT NULL DEFAULT 0,
    cache_tokens INTEGER NOT NULL DEFAULT 0,
    draft_tokens INTEGER NOT NULL DEFAULT 0,
    draft_acc_tokens INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    prompt_per_second REAL NOT NULL DEFAULT 0,
    tokens_per_second REAL NOT NULL DEFAULT 0,
    duration_ms INTEGER NOT NULL DEFAULT 0,
    error_msg TEXT NOT NULL DEFAULT '',
    metadata_json TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS idx_activity_created_id ON activity (ts_created DESC, id DESC);
CREATE INDEX IF NOT EXISTS idx_activity_model_created_id
    ON activity (model_id, ts_created DESC, id DESC);
"""
OUR_COLUMNS = {"method": "TEXT NOT NULL DEFAULT ''", "key_id": "TEXT NOT NULL DEFAULT ''"}
COLUMNS = (
    "id",
    "ts_created",
    "model_id",
    "req_path",
    "resp_content_type",
    "resp_status_code",
    "cache_tokens",
    "draft_tokens",
    "draft_acc_tokens",
    "input_tokens",
    "output_tokens",
    "prompt_per_second",
    "tokens_per_second",
    "duration_ms",
    "error_msg",
    "metadata_json",
    "method",
    "key_id",
)
INSERT = (
    f"INSERT OR REPLACE INTO activity ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(COLUMNS))})"
)
SELECT = f"SELECT {', '.join(COLUMNS)} FROM activity"

Row = tuple[Any, ...]  # one value per COLUMNS entry


@dataclass(frozen=True)
class Retention:
    """How much the writer keeps: rows (0 = all) and age in seconds (0 = any)."""

    max_rows: int = 0
    max_age: float = 0.0


class ActivityDB:
    def __init__(self, path: str | None) -> None:
        self.path = path
        # The worker thread is not the opening thread; ActivityStore serialises access.
        self._db = sqlite3.connect(path or ":memory:", check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout = 5000")
        if path:
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"cannot use WAL journalling on {path}: {mode}")
            self._db.execute("PRAGMA synchronous = NORMAL")
        with self._db:
            self._db.executescript(SCHEMA)
            present = {row[1] for row in self._db.execute("PRAGMA table_info(activity)")}
            for name, decl in OUR_COLUMNS.items():
                if name not in present:
                    self._db.execute(f"ALTER TABLE activity ADD COLUMN {name} {decl}")
        needs.create(self._db)

    def save_needs(
        self, model: str, fingerprint: str, amounts: dict[str, float], now: float
    ) -> None:
        needs.save(self._db, model, fingerprint, amounts, now)

    def learned_needs(self, config: Config) -> needs.Needs:
        return needs.load(self._db, config)

    def close(self) -> None:
        self._db.close()

    def last_id(self) -> int:
        """The highest id ever used (AUTOINCREMENT never reuses one, even after pruning)."""
        (highest,) = self._db.execute("SELECT COALESCE(MAX(id), 0) FROM activity").fetchone()
        sequence = self._db.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = 'activity'"
        ).fetchone()
        return max(int(highest), int(sequence[0]) if sequence else 0)

    def insert(self, rows: Sequence[Row], retention: Retention, now: float) -> None:
        """One transaction: the rows, then pruning to the retention limits."""
        with self._db:
            self._db.executemany(INSERT, rows)
            self._prune(retention, now)

    def _prune(self, retention: Retention, now: float) -> None:
        if retention.max_rows > 0:
            # ids only grow, so the newest max_rows rows are those above MAX(id) - max_rows
            self._db.execute(
                "DELETE FROM activity WHERE id <= (SELECT MAX(id) FROM activity) - ?",
                (retention.max_rows,),
            )
        if retention.max_age > 0:
            self._db.execute(
                "DELETE FROM activity WHERE ts_created < ?", (int(now - retention.max_age),)
            )

    def page(self, query: ActivityQuery) -> tuple[list[dict[str, Any]], int]:
        """(rows of the asked page as dicts, total rows matching the filter)."""
        where, args = query.filter.where()
        (total,) = self._db.execute(f"SELECT COUNT(*) FROM activity{where}", args).fetchone()
        offset = (query.page - 1) * query.limit
        rows = self._db.execute(
            f"{SELECT}{where}{query.order_by()} LIMIT ? OFFSET ?",
            [*args, query.limit, offset],
        ).fetchall()
        return [as_entry(row) for row in rows], int(total)

    def stats(self, activity_filter: ActivityFilter) -> dict[str, Any]:
        where, args = activity_filter.where()
        count, inputs, outputs, cached = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0),"
            " COALESCE(SUM(CASE WHEN cache_tokens > 0 THEN cache_tokens ELSE 0 END), 0)"
            f" FROM activity{where}",
            args,
        ).fetchone()
        speeds = " AND " if where else " WHERE "
        speeds += "(prompt_per_second > 0 OR tokens_per_second > 0)"
        prompt: list[float] = []
        generation: list[float] = []
        for prompt_speed, generation_speed in self._db.execute(
            f"SELECT prompt_per_second, tokens_per_second FROM activity{where}{speeds}", args
        ):
            if prompt_speed > 0:
                prompt.append(prompt_speed)
            if generation_speed > 0:
                generation.append(generation_speed)
        return {
            "total_requests": count,
            "total_input_tokens": inputs,
            "total_output_tokens": outputs,
            "total_cache_tokens": cached,
            "prompt_histogram": histogram(prompt),
            "gen_histogram": histogram(generation),
        }


def total_pages(total: int, limit: int) -> int:
    return 0 if total == 0 or limit <= 0 else math.ceil(total / limit)


def _rfc3339(seconds: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def as_entry(row: Row) -> dict[str, Any]:
    """One row as llama-swap's `ActivityLogEntry` JSON (plus `method` and `key_id`)."""
    values = dict(zip(COLUMNS, row, strict=True))
    entry: dict[str, Any] = {
        "id": values["id"],
        "timestamp": _rfc3339(values["ts_created"]),
        "model": values["model_id"],
        "req_path": values["req_path"],
        "resp_content_type": values["resp_content_type"],
        "resp_status_code": values["resp_status_code"],
        "tokens": {
            "cache_tokens": values["cache_tokens"],
            "draft_tokens": values["draft_tokens"],
            "draft_acc_tokens": values["draft_acc_tokens"],
            "input_tokens": values["input_tokens"],
            "output_tokens": values["output_tokens"],
            "prompt_per_second": values["prompt_per_second"],
            "tokens_per_second": values["tokens_per_second"],
        },
        "duration_ms": values["duration_ms"],
        "has_capture": False,
    }
    if values["error_msg"]:
        entry["error_msg"] = values["error_msg"]
    if values["metadata_json"]:
        entry["metadata"] = json.loads(values["metadata_json"])
    if values["method"]:
        entry["method"] = values["method"]
    if values["key_id"]:
        entry["key_id"] = values["key_id"]
    return entry


def metadata_json(metadata: Iterable[tuple[str, str]]) -> str:
    items = dict(metadata)
    return json.dumps(items, separators=(",", ":")) if items else ""
