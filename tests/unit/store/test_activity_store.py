"""The activity store: SQLite rows from RequestFinished events, written off the loop.

Ported from llama-swap's store_test.go (filters, sort, stats, prune, persistence, WAL),
plus what ours adds: reads see every request finished before them, retention by rows
and age, a restart keeps the rows and the ids go on from where they were.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from llamaswap.config import Config
from llamaswap.runtime.events import RequestCapture, RequestFinished
from llamaswap.store import ActivityFilter, ActivityStore, parse_query

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def finished(
    model: str = "m1", *, at: float = 1000.0, status: int = 200, **extra: Any
) -> RequestFinished:
    fields: dict[str, Any] = {"recorded": True, "content_type": "application/json"}
    fields |= extra
    return RequestFinished("POST", "/v1/chat/completions", model, status, 0.5, at=at, **fields)


def usage(inputs: int, outputs: int, cached: int = -1, prompt: float = 0, gen: float = 0) -> bytes:
    timings = {"prompt_n": inputs, "predicted_n": outputs, "prompt_per_second": prompt}
    timings |= {"predicted_per_second": gen}
    if cached >= 0:
        timings["cache_n"] = cached
    return json.dumps({"timings": timings}).encode()


async def opened(config: Config | None = None, path: str | None = None) -> ActivityStore:
    config = config or Config()
    store = ActivityStore(lambda: config, path)
    await store.open()
    return store


async def ids(store: ActivityStore, query: str = "") -> list[int]:
    from urllib.parse import parse_qs

    page = await store.page(parse_query(parse_qs(query)))
    return [entry["id"] for entry in page["data"]]


async def test_rows_filters_and_paging() -> None:
    store = await opened()
    for i, model in enumerate(["m1", "m2", "m1", "m3"]):
        store.listen(finished(model, at=1000 + i, metadata={"trace": model}))
    assert await ids(store) == [4, 3, 2, 1]
    assert await ids(store, "model=m1&model=m3") == [4, 3, 1]
    assert await ids(store, "min_id=2&max_id=3") == [3, 2]
    assert await ids(store, "model=m1&min_id=2") == [3]
    assert await ids(store, "start=1970-01-01T00:16:42Z") == [4, 3]
    assert await ids(store, "start=1970-01-01T00:16:41Z&end=1970-01-01T00:16:42Z") == [3, 2]
    page = await store.page(parse_query({"limit": ["3"], "page": ["2"]}))
    assert [e["id"] for e in page["data"]] == [1]
    assert (page["total"], page["total_pages"], page["page"], page["limit"]) == (4, 2, 2, 3)
    first = (await store.page(parse_query({})))["data"][0]
    assert first["metadata"] == {"trace": "m3"} and first["timestamp"] == "1970-01-01T00:16:43Z"
    await store.close()


async def test_only_recorded_requests_are_kept() -> None:
    store = await opened()
    store.listen(finished(recorded=False))
    store.listen("not an event")
    store.listen(finished())
    assert await ids(store) == [1]
    await store.close()


async def test_token_columns_sort_and_stats() -> None:
    store = await opened()
    store.listen(finished("m1", tail=usage(10, 30, cached=2, prompt=100, gen=50)))
    store.listen(finished("m1", tail=usage(5, 10, prompt=200, gen=100)))
    store.listen(finished("m2", tail=usage(7, 20, prompt=300)))
    store.listen(finished("m1", status=500, tail=b'{"error":{"message":"boom"}}'))
    page = await store.page(parse_query({"sort": ["generated"], "order": ["asc"]}))
    assert [e["tokens"]["output_tokens"] for e in page["data"]] == [0, 10, 20, 30]
    failed = page["data"][0]
    assert failed["error_msg"] == "boom" and failed["tokens"]["tokens_per_second"] == -1
    stats = await store.stats(ActivityFilter(models=("m1",)))
    assert (stats["total_requests"], stats["total_input_tokens"]) == (3, 15)
    assert (stats["total_output_tokens"], stats["total_cache_tokens"]) == (40, 2)
    assert stats["gen_histogram"]["min"] == 50 and stats["prompt_histogram"]["max"] == 200
    everything = await store.stats(ActivityFilter())
    assert everything["total_requests"] == 4 and everything["prompt_histogram"]["max"] == 300
    await store.close()


async def test_memory_store_keeps_metrics_max_in_memory_rows() -> None:
    store = await opened(Config(metricsMaxInMemory=2))
    for _ in range(5):
        store.listen(finished())
    assert await ids(store) == [5, 4]
    await store.close()


async def test_an_unread_memory_store_parses_nothing_and_holds_no_capture_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without a file, rows are built when someone reads (a server nobody watches pays
    for no parsing); the queue holds only what the table would keep, and a capture
    lives in its ring, not in the queued event as well."""
    from llamaswap.store import activity

    parsed: list[int] = []
    row_of = activity.row_of

    def counted(row_id: int, event: RequestFinished) -> Any:
        parsed.append(row_id)
        return row_of(row_id, event)

    monkeypatch.setattr(activity, "row_of", counted)
    store = await opened(Config(metricsMaxInMemory=3, captureBuffer=1))
    capture = RequestCapture({"A": "b"}, b"question", {}, b"answer", 6)
    for _ in range(10):
        store.listen(finished(capture=capture))
    assert parsed == []
    assert all(event.capture is None for _, event in store._pending)
    assert len(store._pending) == 3 and 10 in store.captures
    assert await ids(store) == [10, 9, 8]
    assert parsed == [8, 9, 10]  # the seven older ones were never parsed
    await store.close()


async def test_a_file_survives_a_restart_and_ids_go_on(tmp_path: Path) -> None:
    path = str(tmp_path / "activity.sqlite")
    store = await opened(Config(), path)
    store.listen(finished("m1", tail=usage(3, 4)))
    store.listen(finished("m2"))
    await store.close()  # writes what is pending
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again = await opened(Config(), path)
    assert await ids(again) == [2, 1]
    again.listen(finished("m3"))
    assert await ids(again) == [3, 2, 1]
    assert (await again.page(parse_query({})))["data"][2]["tokens"]["output_tokens"] == 4
    await again.close()


async def test_file_retention_by_rows_and_by_age(tmp_path: Path) -> None:
    config = Config(storeMaxRows=3, storeMaxAge=3600.0)
    store = await opened(config, str(tmp_path / "a.sqlite"))
    now = time.time()
    store.listen(finished(at=now - 7200))  # older than maxAge
    for _ in range(4):
        store.listen(finished(at=now))
    assert await ids(store) == [5, 4, 3]
    await store.close()


async def test_a_llama_swap_store_file_opens_and_gains_our_columns(tmp_path: Path) -> None:
    path = tmp_path / "llama-swap.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE activity (id INTEGER PRIMARY KEY AUTOINCREMENT, ts_created INTEGER NOT"
            " NULL, model_id TEXT NOT NULL, req_path TEXT NOT NULL DEFAULT '', resp_content_type"
            " TEXT NOT NULL DEFAULT '', resp_status_code INTEGER NOT NULL DEFAULT 0, cache_tokens"
            " INTEGER NOT NULL DEFAULT 0, draft_tokens INTEGER NOT NULL DEFAULT 0,"
            " draft_acc_tokens INTEGER NOT NULL DEFAULT 0, input_tokens INTEGER NOT NULL DEFAULT"
            " 0, output_tokens INTEGER NOT NULL DEFAULT 0, prompt_per_second REAL NOT NULL"
            " DEFAULT 0, tokens_per_second REAL NOT NULL DEFAULT 0, duration_ms INTEGER NOT NULL"
            " DEFAULT 0, error_msg TEXT NOT NULL DEFAULT '', metadata_json TEXT NOT NULL DEFAULT"
            " '');"
            "INSERT INTO activity (ts_created, model_id) VALUES (5, 'old');"
        )
    store = await opened(Config(), str(path))
    store.listen(finished("new", key_id="abcd1234"))
    page = await store.page(parse_query({}))
    assert [(e["id"], e["model"]) for e in page["data"]] == [(2, "new"), (1, "old")]
    assert page["data"][0]["key_id"] == "abcd1234" and "key_id" not in page["data"][1]
    await store.close()


async def test_captures_are_kept_while_captureBuffer_allows() -> None:
    capture = RequestCapture({"A": "b"}, b"question", {}, b"answer", 6)
    store = await opened(Config(captureBuffer=1))
    store.listen(finished(capture=capture))
    store.listen(finished())
    page = await store.page(parse_query({}))
    assert [e["has_capture"] for e in page["data"]] == [False, True]
    data = await store.capture(1)
    assert data is not None and json.loads(data)["id"] == 1
    assert await store.capture(2) is None
    await store.close()
    off = await opened(Config(captureBuffer=0))
    off.listen(finished(capture=capture))
    assert await off.capture(1) is None
    await off.close()


async def test_the_writer_writes_without_a_reader(tmp_path: Path) -> None:
    """The writer task drains by itself: the row reaches the file with nobody reading."""
    path = tmp_path / "w.sqlite"
    store = await opened(Config(), str(path))

    def rows() -> int:
        with sqlite3.connect(path) as db:
            return int(db.execute("SELECT COUNT(*) FROM activity").fetchone()[0])

    async with anyio.create_task_group() as tg:
        tg.start_soon(store.run)
        store.listen(finished())
        with anyio.fail_after(5):
            while rows() != 1:  # noqa: ASYNC110 - the file, not an event, is the evidence
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    await store.close()


async def test_a_failing_write_is_counted_and_the_next_one_works(tmp_path: Path) -> None:
    store = await opened(Config(), str(tmp_path / "x.sqlite"))
    assert store._db is not None
    store._db._db.execute(
        "CREATE TRIGGER no BEFORE INSERT ON activity BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
    )
    store.listen(finished())
    await store.flush()
    assert store.failed_batches == 1
    store._db._db.execute("DROP TRIGGER no")
    store.listen(finished())
    assert await ids(store) == [2]
    await store.close()


async def test_stopping_the_writer_waits_for_the_batch_in_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server stops the writer, then closes the store: the close must never reach
    the connection while the worker thread still writes to it (a native task cancel
    let go of the limiter mid-write, and SQLite crashed the process)."""
    import threading

    from llamaswap.store.database import ActivityDB

    store = await opened(Config(), str(tmp_path / "s.sqlite"))
    assert store._db is not None
    writing, release = threading.Event(), threading.Event()
    order: list[str] = []
    insert = store._db.insert

    def slow_insert(*args: Any) -> None:
        writing.set()
        release.wait(5)
        insert(*args)
        order.append("inserted")

    store._db.insert = slow_insert  # type: ignore[method-assign]
    close = ActivityDB.close

    def recorded_close(db: ActivityDB) -> None:
        order.append("closed")
        close(db)

    writer = asyncio.get_running_loop().create_task(store.run())
    store.listen(finished())
    with anyio.fail_after(5):
        await anyio.to_thread.run_sync(writing.wait)
    store.stop()
    release.set()
    await writer
    monkeypatch.setattr(ActivityDB, "close", recorded_close)
    await store.close()
    assert order == ["inserted", "closed"]
