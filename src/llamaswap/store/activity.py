"""The activity store: every metered request, kept in SQLite, written off the request path.

On the request path (the bus listener, synchronous inside the handler that published
`RequestFinished`) the store only numbers the event, puts its capture in the ring as it
is, and appends the event to a queue: no parsing, no I/O. With a file, a writer task
takes whatever has accumulated (every BATCH_SECONDS under load), and in a worker thread
turns it into rows (token figures, errors) and inserts them in one transaction, pruning
to the retention limits in the same transaction. Without one, the queue is written only
when someone reads, so a server nobody watches never parses a response for activity.

Every database call runs in the worker thread under one `CapacityLimiter(1)` and starts
by writing whatever is pending (a thread-safe deque: the loop appends, the thread pops):
so a read sees every request that finished before it was asked, and no two database
calls ever overlap.

Without `store.path` the table is an in-memory SQLite database kept to the last
`metricsMaxInMemory` rows (as llama-swap). A file keeps `store.maxRows` rows and, with
`store.maxAge`, nothing older. If the writer falls far behind (a stuck disk), the
oldest pending events are dropped and counted rather than growing without bound.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import anyio
import anyio.to_thread

from llamaswap.config import Config
from llamaswap.config.fingerprint import command_fingerprint
from llamaswap.runtime.events import NeedMeasured, RequestCapture, RequestFinished

from .captures import CaptureRing, capture_limit
from .database import ActivityDB, Retention, Row, total_pages
from .needs import Needs
from .query import ActivityFilter, ActivityQuery
from .records import row_of

log = logging.getLogger("llamaswap.store")

MAX_PENDING = 50_000
BATCH_SECONDS = 0.25
QUEUED_BYTES = 4 * 1024 * 1024  # response tails an unread in-memory queue may hold
MIB = 1024 * 1024


def retention_of(config: Config, persistent: bool) -> Retention:
    if persistent:
        return Retention(config.store_max_rows, config.store_max_age)
    return Retention(config.metrics_max_in_memory, 0.0)


class ActivityStore:
    """Owns the database, the capture ring and the pending events of one server."""

    def __init__(self, config: Callable[[], Config], path: str | None) -> None:
        self._config = config
        self.path = path
        self._db: ActivityDB | None = None
        self._limiter = anyio.CapacityLimiter(1)
        self._pending: deque[tuple[int, RequestFinished]] = deque(maxlen=MAX_PENDING)
        self._measured: deque[NeedMeasured] = deque(maxlen=1000)  # measured capacity
        self._wake = anyio.Event()
        self._queued_bytes = 0  # tails queued since the last write (approximate)
        self._stop = anyio.Event()
        self._last_id = 0
        self.dropped = 0
        self.failed_batches = 0
        self.captures = CaptureRing(config().capture_buffer * MIB)

    # -------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        self._db = await anyio.to_thread.run_sync(ActivityDB, self.path)
        self._last_id = await self._call(self._db.last_id)

    async def close(self) -> None:
        """Write what is pending, then close (shielded: runs during shutdown)."""
        with anyio.CancelScope(shield=True):
            await self.flush()
            if self._db is not None:
                db, self._db = self._db, None
                await anyio.to_thread.run_sync(db.close, limiter=self._limiter)

    async def run(self) -> None:
        """The writer: flush whenever events are pending, until `stop`. It is stopped,
        never cancelled: a native cancel would let go of the limiter while the worker
        thread still writes, and `close` would then close the connection under it."""
        while not self._stop.is_set():
            await self._wake.wait()
            # gather a batch: under load, one trip to the worker thread per BATCH_SECONDS
            # rather than one per request (reads write what is pending first, so nobody
            # sees the delay)
            with anyio.move_on_after(BATCH_SECONDS):
                await self._stop.wait()
            self._wake = anyio.Event()
            await self.flush()

    def stop(self) -> None:
        """Let the writer finish its current batch and return."""
        self._stop.set()
        self._wake.set()

    # -------------------------------------------------------------- the request path

    def listen(self, event: object) -> None:
        """The bus listener: number a metered request and queue it (never blocks); a
        model's measured need is queued too, to be recalled after a restart.

        A capture goes to its ring at once (bounded by bytes there) and the queued event
        keeps none. Without a file, nothing is written until someone reads: the queue
        keeps the last `metricsMaxInMemory` requests, which is all the table would keep."""
        if type(event) is not RequestFinished or not event.recorded:
            if type(event) is NeedMeasured:
                self._measured.append(event)
                self._wake.set()
            return
        self._last_id += 1
        row_id = self._last_id
        if event.capture is not None:
            self._keep_capture(row_id, event.path, event.capture)
            event = replace(event, capture=None)
        pending = self._pending
        in_memory = 0 if self.path else self._config().metrics_max_in_memory
        if 0 < in_memory <= MAX_PENDING:
            while len(pending) >= in_memory:
                pending.popleft()  # older than the table keeps: never a row
            pending.append((row_id, event))
            self._queued_bytes += len(event.tail)
            if self._queued_bytes > QUEUED_BYTES and not self._wake.is_set():
                self._wake.set()  # long answers' tails: write them rather than hold them
            return
        if len(pending) == MAX_PENDING:
            self.dropped += 1  # the deque drops the oldest
        pending.append((row_id, event))
        if not self._wake.is_set():
            self._wake.set()

    def _keep_capture(self, row_id: int, path: str, capture: RequestCapture) -> None:
        captures = self.captures
        capacity = self._config().capture_buffer * MIB
        if captures.capacity != capacity:
            captures.resize(capacity)
        if capacity and not captures.add(row_id, path, capture):
            log.debug("activity: capture %d is larger than captureBuffer", row_id)

    # -------------------------------------------------------------- writing

    async def flush(self) -> None:
        """Write every event pending now; returns once they are committed."""
        await self._call(self._write_pending)

    def _write_pending(self) -> None:
        """In the worker thread: drain the pending events and write them as one batch."""
        self._write_needs()
        pending = self._pending
        self._queued_bytes = 0
        batch = []
        while True:
            try:
                batch.append(pending.popleft())
            except IndexError:
                break
        if not batch or self._db is None:
            return
        config = self._config()
        rows: list[Row] = []
        for row_id, event in batch:
            try:
                rows.append(row_of(row_id, event))
            except Exception:  # one odd response must not cost the batch
                log.warning("activity: cannot record request %d", row_id, exc_info=True)
        try:
            self._db.insert(rows, retention_of(config, self.path is not None), time.time())
        except Exception as error:
            self.failed_batches += 1
            log.warning("activity: could not store %d requests: %s", len(rows), error)

    def _write_needs(self) -> None:
        config = self._config()
        while self._measured and self._db is not None:
            event = self._measured.popleft()
            model = config.models.get(event.model)
            if model is None:
                continue
            try:
                fingerprint = command_fingerprint(model.cmd, model.proxy)
                self._db.save_needs(event.model, fingerprint, event.amounts, event.at)
            except Exception as error:
                log.warning("activity: could not keep what %s needs: %s", event.model, error)

    async def learned_needs(self) -> Needs:
        """What models were measured to use, kept from earlier runs (same `cmd` only)."""
        needs: Needs = await self._call(self._learned_needs)
        return needs

    def _learned_needs(self) -> Needs:
        assert self._db is not None, "the activity store is not open"
        return self._db.learned_needs(self._config())

    async def _call(self, function: Callable[..., Any], *args: Any) -> Any:
        return await anyio.to_thread.run_sync(function, *args, limiter=self._limiter)

    # -------------------------------------------------------------- reading

    async def page(self, query: ActivityQuery) -> dict[str, Any]:
        """llama-swap's `ActivityPage`: {data, page, limit, total, total_pages}."""
        entries, total = await self._call(self._page, query)
        return {
            "data": entries,
            "page": query.page,
            "limit": query.limit,
            "total": total,
            "total_pages": total_pages(total, query.limit),
        }

    def _page(self, query: ActivityQuery) -> tuple[list[dict[str, Any]], int]:
        self._write_pending()
        assert self._db is not None, "the activity store is not open"
        entries, total = self._db.page(query)
        for entry in entries:
            entry["has_capture"] = entry["id"] in self.captures
        return entries, total

    async def stats(self, activity_filter: ActivityFilter) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(self._stats, activity_filter)
        return result

    def _stats(self, activity_filter: ActivityFilter) -> dict[str, Any]:
        self._write_pending()
        assert self._db is not None, "the activity store is not open"
        return self._db.stats(activity_filter)

    async def capture(self, capture_id: int) -> bytes | None:
        """The capture's JSON, or None (never kept, evicted, or captures are off)."""
        data: bytes | None = await self._call(self._capture, capture_id)
        return data

    def _capture(self, capture_id: int) -> bytes | None:
        self._write_pending()
        return self.captures.get(capture_id)

    def capture_tail_limit(self) -> int:
        return capture_limit(self._config().capture_buffer)
