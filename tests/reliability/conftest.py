"""Shared pieces of the reliability suite: process and memory probes, a raw HTTP client
for requests no well-behaved client would send, a server built from a `Config`, a
server-side ledger of answered requests, and the random traffic generator used by the
slow tests (`LLAMASWAP_SLOW=1`).

Everything runs on 127.0.0.1 against a llamaswap server running in this process (so
`/proc/self` is llamaswap's own memory and file descriptors) with fake upstreams as
child processes. Nothing here sleeps to synchronise: waits are on the event bus, on the
access log, or bounded polls of /proc where no event exists.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import random
import re
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import anyio
import pytest

from llamaswap.config import Config
from llamaswap.runtime import keepers

from ..integration.helpers import pid_alive
from ..integration.http_helpers import CHAT, chat
from ..integration.server import RunningServer, running_server

SLOW = os.environ.get("LLAMASWAP_SLOW") == "1"
SLOW_REASON = "slow reliability run: set LLAMASWAP_SLOW=1 (make e2e does)"


# --- probes -----------------------------------------------------------------------------


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size (VmRSS) of a process, from /proc."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def settled_rss() -> int:
    """This process's RSS after a full garbage collection."""
    gc.collect()
    return rss_bytes()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def live_children(parent: int | None = None) -> list[int]:
    """Live (non-zombie) processes whose parent is `parent` (default: this process)."""
    parent = os.getpid() if parent is None else parent
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent and fields[0] != b"Z":
            found.append(int(entry.name))
    return found


async def wait_dead(pid: int, within: float = 5.0) -> bool:
    """Wait (at most `within` s) until `pid` has exited; a pidfd becomes readable at the
    exit of any process, not only of our children. True when it is gone."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        with anyio.move_on_after(within):
            await anyio.wait_readable(fd)
    finally:
        os.close(fd)
    return not pid_alive(pid)


MB = 1024 * 1024


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_leftover_children() -> Iterator[None]:
    """Every test must leave no live child process behind (llamaswap runs in-process,
    so its upstreams are our children)."""
    before = set(live_children())
    yield
    keepers.discard_spare()  # the idle keeper started ahead for the next upstream holds nothing
    leftovers = [pid for pid in live_children() if pid not in before]
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not leftovers, f"child processes left running: {leftovers}"


class Reaper:
    """Pids a test saw (grandchildren that are not ours to wait for); killed at teardown
    if they are still there, so a failing test leaves nothing behind either."""

    def __init__(self) -> None:
        self.pids: list[int] = []

    def watch(self, pid: int) -> int:
        self.pids.append(pid)
        return pid

    def kill_all(self) -> list[int]:
        survivors = [pid for pid in self.pids if pid_alive(pid)]
        for pid in survivors:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return survivors


@pytest.fixture
def reaper() -> Iterator[Reaper]:
    reaper = Reaper()
    yield reaper
    reaper.kill_all()


# --- a server from a Config object --------------------------------------------------------

serving = running_server  # the harness takes a Config as well as YAML text


def with_model(config: Config, model: str, **changes: Any) -> Config:
    """`config` with one model's effective settings changed (bypassing YAML-level floors,
    such as the 15 s minimum of healthCheckTimeout, that would make a test slow)."""
    models = dict(config.models)
    models[model] = models[model].model_copy(update=changes)
    return config.model_copy(update={"models": models})


# --- waiting on the server ------------------------------------------------------------------


def router_idle(server: RunningServer) -> bool:
    router = server.service.router
    snapshot = router.snapshot
    return (
        not snapshot.queued
        and not snapshot.in_flight
        and not router._leases
        and not router._tickets
    )


async def wait_until(server: RunningServer, condition: Callable[[], bool], within: float) -> None:
    """Wait (event driven: every router step and state change publishes on the bus) until
    `condition()` holds; fails after `within` seconds."""
    changed = anyio.Event()

    def on_event(_event: object) -> None:
        nonlocal changed
        changed.set()
        changed = anyio.Event()

    bus = server.service.bus
    bus.add_listener(on_event)
    try:
        with anyio.fail_after(within):
            while not condition():
                await changed.wait()
    finally:
        bus.remove_listener(on_event)


def states_settled(server: RunningServer) -> bool:
    router = server.service.router
    return all(router.model_state(m) in ("ready", "stopped") for m in server.config.models)


# --- raw HTTP ----------------------------------------------------------------------------------


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def raw_request(
    method: str, target: bytes, body: bytes | None = None, headers: tuple[bytes, ...] = ()
) -> bytes:
    """An HTTP/1.1 request with exactly these bytes in the request line and headers."""
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", *headers]
    lines.append(b"Connection: close")
    if body is not None:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


async def raw_exchange(url: str, data: bytes, within: float = 10.0) -> RawResponse:
    """Send raw bytes, read until the server closes; parse the status line and headers."""
    host, port = url.removeprefix("http://").split(":")
    received = b""
    with anyio.fail_after(within):
        async with await anyio.connect_tcp(host, int(port)) as stream:
            await stream.send(data)
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                while True:
                    received += await stream.receive()
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    assert len(parts) >= 2 and parts[0].startswith("HTTP/"), f"not an HTTP response: {received!r}"
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    return RawResponse(int(parts[1]), headers, body)


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


# --- the server's own record of every answer ------------------------------------------------


class AccessLedger(logging.Handler):
    """Counts llamaswap's access-log lines per request id (`?rid=N` in the path): the
    front door logs exactly one line per request it handled, with the final status
    (499 when the client left first), so this is the server's side of "answered exactly
    once". Runs on the event loop thread, so it may set anyio events."""

    LINE = re.compile(r'"[A-Z]+ \S*[?&]rid=(\d+)\S* HTTP/[\d.]+" (\d{3}) ')

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.statuses: dict[int, list[int]] = {}
        self._changed = anyio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        match = self.LINE.search(record.getMessage())
        if match:
            self.statuses.setdefault(int(match.group(1)), []).append(int(match.group(2)))
            self._changed.set()
            self._changed = anyio.Event()

    async def until_logged(self, rids: set[int], within: float = 20.0) -> None:
        with anyio.fail_after(within):
            while not rids.issubset(self.statuses):
                await self._changed.wait()


@contextlib.contextmanager
def access_ledger() -> Iterator[AccessLedger]:
    ledger = AccessLedger()
    logger = logging.getLogger("llamaswap.access")
    logger.addHandler(ledger)
    try:
        yield ledger
    finally:
        logger.removeHandler(ledger)


# --- random traffic -------------------------------------------------------------------------

# how a request ended, as its client saw it
OK = "ok"  # 200 and a complete answer
STATUS = "status"  # a clean error status with an OpenAI-shaped body
STREAM_ERROR = "stream_error"  # 200, then an SSE error event (its upstream went away)
TRUNCATED = "truncated"  # 200, then the body was cut short (its upstream went away)
CANCELLED = "cancelled"  # the client gave up on purpose
STUCK = "stuck"  # no end within REQUEST_LIMIT
UNEXPECTED = "unexpected"  # anything else: a bug
CLEAN_ERROR_STATUSES = {429, 500, 502, 503}
REQUEST_LIMIT = 60.0  # a request taking longer than this is stuck


@dataclass(slots=True)
class Outcome:
    """How one request ended, as its client saw it."""

    rid: int
    model: str
    kind: str
    status: int | None = None
    phase: str = ""  # for cancellations: before-answer, while-loading, mid-stream
    detail: str = ""


@dataclass
class TrafficPlan:
    models: list[str]
    count: int | None = None  # requests to send, or
    seconds: float | None = None  # keep sending for this long
    concurrency: int = 32
    stream_share: float = 0.5
    cancel_share: float = 0.1
    crashes: int = 0  # SIGKILL a random model's upstream this many times, spread evenly
    unloads: int = 0  # unload a random model through the API this many times
    pick: Callable[[random.Random, float], str] | None = None  # (rng, elapsed s) -> model
    seed: int = 0


@dataclass
class TrafficResult:
    outcomes: list[Outcome]
    seconds: float
    crashes: int = 0
    unloads: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    phases: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)

    def summary(self) -> str:
        rate = len(self.outcomes) / self.seconds if self.seconds else 0.0
        return (
            f"{len(self.outcomes)} requests in {self.seconds:.1f}s ({rate:.0f}/s), "
            f"{self.crashes} crashes, {self.unloads} unloads; outcomes {dict(self.kinds)}; "
            f"error statuses {dict(self.statuses)}; cancelled {dict(self.phases)}; "
            f"commonest errors {self.commonest_errors()}"
        )

    def commonest_errors(self, count: int = 3) -> list[tuple[str, int]]:
        """The most frequent error messages (first 120 characters), to tell a flake's cause."""
        messages = Counter(o.detail[:120] for o in self.outcomes if o.kind == STATUS)
        return messages.most_common(count)


class Traffic:
    """Random chat traffic through llamaswap: plain and streamed requests, clients that
    give up at random points, and injected upstream crashes and unloads."""

    def __init__(
        self, server: RunningServer, http: aiohttp.ClientSession, plan: TrafficPlan, first_rid: int
    ) -> None:
        self.server = server
        self.http = http
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.next_rid = first_rid
        self.first_rid = first_rid
        self.outcomes: list[Outcome] = []
        self.crashes = 0
        self.unloads = 0
        self._started = 0.0

    def _elapsed(self) -> float:
        return time.monotonic() - self._started

    def _more(self) -> bool:
        plan = self.plan
        if plan.count is not None:
            return self.next_rid - self.first_rid < plan.count
        assert plan.seconds is not None
        return self._elapsed() < plan.seconds

    def _progress(self) -> float:
        """How far through the run we are, 0..1."""
        plan = self.plan
        if plan.count is not None:
            return (self.next_rid - self.first_rid) / plan.count
        assert plan.seconds is not None
        return self._elapsed() / plan.seconds

    async def run(self) -> TrafficResult:
        self._started = time.monotonic()
        async with anyio.create_task_group() as tg:
            for _ in range(self.plan.concurrency):
                tg.start_soon(self._worker, tg)
        result = TrafficResult(self.outcomes, self._elapsed(), self.crashes, self.unloads)
        for outcome in self.outcomes:
            result.kinds[outcome.kind] += 1
            if outcome.kind == CANCELLED:
                result.phases[outcome.phase] += 1
            if outcome.status is not None and outcome.status != 200:
                result.statuses[outcome.status] += 1
        return result

    async def _worker(self, tg: anyio.abc.TaskGroup) -> None:
        while self._more():
            rid = self.next_rid
            self.next_rid += 1
            self._maybe_disrupt(tg)
            self.outcomes.append(await self._one(rid))

    def _maybe_disrupt(self, tg: anyio.abc.TaskGroup) -> None:
        plan, progress = self.plan, self._progress()
        # spread evenly: the k-th event happens at progress k / (n + 1)
        if self.crashes < plan.crashes and progress >= (self.crashes + 1) / (plan.crashes + 1):
            self.crashes += 1
            self._crash_one()
        if self.unloads < plan.unloads and progress >= (self.unloads + 1) / (plan.unloads + 1):
            self.unloads += 1
            tg.start_soon(self._unload_one, self.rng.choice(plan.models))

    def _crash_one(self) -> None:
        """SIGKILL the upstream of a random model that has one (like a segfault)."""
        processes = self.server.service.router.processes
        candidates = [m for m in self.plan.models if processes[m].pid is not None]
        if candidates:
            pid = processes[self.rng.choice(candidates)].pid
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    async def _unload_one(self, model: str) -> None:
        async with self.http.post(f"{self.server.url}/api/models/unload/{model}") as response:
            assert response.status == 200, await response.text()

    def _pick(self) -> str:
        if self.plan.pick is not None:
            return self.plan.pick(self.rng, self._elapsed())
        return self.rng.choice(self.plan.models)

    async def _one(self, rid: int) -> Outcome:
        rng, plan = self.rng, self.plan
        model = self._pick()
        stream = rng.random() < plan.stream_share
        mode = ""
        if rng.random() < plan.cancel_share:
            mode = rng.choice(("early", "loading", "mid-stream"))
        deadline = REQUEST_LIMIT
        if mode == "early":
            deadline = rng.uniform(0.0, 0.004)
        elif mode == "loading":
            router = self.server.service.router
            loading = [m for m in plan.models if router.model_state(m) != "ready"]
            model = rng.choice(loading) if loading else model
            deadline = rng.uniform(0.005, 0.3)
        elif mode == "mid-stream":
            stream = True
        seen = _Seen()
        with anyio.move_on_after(deadline) as scope:
            try:
                return await self._exchange(rid, model, stream, mode == "mid-stream", seen)
            except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
                kind = TRUNCATED if seen.status is not None else UNEXPECTED
                return Outcome(rid, model, kind, seen.status, detail=repr(exc))
            except (aiohttp.ClientError, OSError) as exc:
                return Outcome(rid, model, UNEXPECTED, seen.status, detail=repr(exc))
        assert scope.cancelled_caught
        if not mode:
            return Outcome(rid, model, STUCK, seen.status, detail=f"no end after {deadline}s")
        router = self.server.service.router
        if seen.status is not None:
            phase = "mid-stream"
        elif router.model_state(model) != "ready":
            phase = "while-loading"
        else:
            phase = "before-answer"
        return Outcome(rid, model, CANCELLED, seen.status, phase=phase)

    async def _exchange(
        self, rid: int, model: str, stream: bool, leave_mid_stream: bool, seen: _Seen
    ) -> Outcome:
        url = f"{self.server.url}{CHAT}?rid={rid}"
        async with self.http.post(url, json=chat(model, stream=stream)) as response:
            seen.status = response.status
            if leave_mid_stream and response.status == 200:
                await response.content.readany()
                response.close()
                return Outcome(rid, model, CANCELLED, 200, phase="mid-stream")
            data = await response.read()
            content_type = response.content_type
        return classify(rid, model, response.status, content_type, data, stream)


@dataclass(slots=True)
class _Seen:
    status: int | None = None


def error_envelope(document: Any) -> str | None:
    """The message of an OpenAI-shaped error body, or None when it is not one."""
    if not isinstance(document, dict) or not isinstance(document.get("error"), dict):
        return None
    error = document["error"]
    if not all(key in error for key in ("message", "type", "code")):
        return None
    message = error["message"]
    return message if isinstance(message, str) and message else None


def classify(
    rid: int, model: str, status: int, content_type: str, data: bytes, stream: bool
) -> Outcome:
    if status != 200:
        try:
            message = error_envelope(json.loads(data))
        except ValueError:
            message = None
        if content_type != "application/json" or message is None:
            return Outcome(rid, model, UNEXPECTED, status, detail=f"unshaped error: {data[:200]!r}")
        return Outcome(rid, model, STATUS, status, detail=message)
    if not stream:
        try:
            document = json.loads(data)
            if not isinstance(document["choices"][0]["message"]["content"], str):
                raise TypeError("no message content")
        except (ValueError, KeyError, IndexError, TypeError):
            return Outcome(rid, model, TRUNCATED, status, detail=f"body: {data[-200:]!r}")
        return Outcome(rid, model, OK, status)
    events = [
        line[5:].strip()
        for line in data.decode("utf-8", "replace").splitlines()
        if line.startswith("data:")
    ]
    for event in events:
        if event != "[DONE]" and '"error"' in event:
            message = error_envelope(json.loads(event))
            if message is None:
                return Outcome(rid, model, UNEXPECTED, status, detail=f"bad error event {event}")
            return Outcome(rid, model, STREAM_ERROR, status, detail=message)
    if not events or events[-1] != "[DONE]":
        return Outcome(rid, model, TRUNCATED, status, detail=f"stream tail: {data[-200:]!r}")
    return Outcome(rid, model, OK, status)


def check_traffic(result: TrafficResult, ledger: AccessLedger, plan: TrafficPlan) -> None:
    """The client's and the server's accounts agree: every request ended exactly once."""
    outcomes = result.outcomes
    rids = [o.rid for o in outcomes]
    assert len(rids) == len(set(rids)), "a request was recorded twice"
    if plan.count is not None:
        assert len(outcomes) == plan.count
    bad = [o for o in outcomes if o.kind in (STUCK, UNEXPECTED)]
    assert not bad, f"{len(bad)} requests ended badly, e.g. {bad[:5]}"
    wrong_status = [
        o for o in outcomes if o.kind == STATUS and o.status not in CLEAN_ERROR_STATUSES
    ]
    assert not wrong_status, f"unexpected error statuses: {wrong_status[:5]}"
    disruptions = result.crashes + result.unloads
    broken = [o for o in outcomes if o.kind in (STREAM_ERROR, TRUNCATED)]
    # only requests in flight on an upstream that crashed or was unloaded may be cut
    assert len(broken) <= plan.concurrency * disruptions, broken[:5]
    if not disruptions:
        assert not [o for o in outcomes if o.kind == STATUS and o.status != 429]
    assert result.kinds[OK] >= 0.75 * len(outcomes), result.summary()
    # the server's ledger: at most one access-log line per request, and exactly one with
    # the same status for every request whose client got an answer
    twice = {rid: s for rid, s in ledger.statuses.items() if len(s) != 1}
    assert not twice, f"requests logged more than once: {list(twice.items())[:5]}"
    for outcome in outcomes:
        logged = ledger.statuses.get(outcome.rid)
        if outcome.kind == CANCELLED:
            continue
        assert logged is not None, f"answered but never logged by the server: {outcome}"
        if outcome.kind in (OK, STATUS, STREAM_ERROR):
            assert logged == [outcome.status], (outcome, logged)
    unknown = set(ledger.statuses) - set(rids)
    assert not unknown, f"the server logged requests nobody sent: {sorted(unknown)[:5]}"


async def settle(server: RunningServer, ledger: AccessLedger, result: TrafficResult) -> None:
    """Wait until nothing is queued, in flight or leased, every model is ready or stopped,
    and the server has logged every request its client saw answered."""
    await wait_until(server, lambda: router_idle(server), within=30)
    await wait_until(server, lambda: states_settled(server), within=30)
    answered = {o.rid for o in result.outcomes if o.kind != CANCELLED}
    await ledger.until_logged(answered)
