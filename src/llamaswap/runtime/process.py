"""The process actor: one task owns everything about one upstream.

Callers (`ensure_ready`, `stop`, `shutdown`) only post messages and await a reply;
the actor decides from its own state, so no caller ever branches on a state it read
earlier (llama-swap #946: a request during a TTL stop waited forever). Slow work
(spawn + supervision, health polling, graceful stop) runs in child tasks that report
back through the same inbox. Every state change goes through `ProcessMachine`, which
is generated from `spec/process.fsm.yaml` and rejects anything the spec does not allow.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from llamaswap.config import ModelConfig, split_command
from llamaswap.fsm import ProcessMachine

from .events import ProcessStateChanged
from .health import HealthTimeout
from .launcher import SUBPROCESSES, Launcher, Upstream
from .logs import LogRing
from .spawn import merged_environment

log = logging.getLogger("llamaswap.process")

HEALTH_FAILURE_STOP_GRACE = 5.0
LAST_LINES_IN_ERRORS = 5


class StartFailed(Exception):
    """The upstream could not be made ready; the message says why."""


class StartAborted(StartFailed):
    """A stop or unload arrived while the upstream was starting."""


class ProcessShutdown(StartFailed):
    """The process actor has shut down (or is shutting down) and will never start again."""


@dataclass(frozen=True)
class UpstreamSettings:
    """What a process actor needs to know about its model (a slice of ModelConfig)."""

    model: str
    cmd: str
    proxy: str
    check_endpoint: str = "/health"
    cmd_stop: str = ""
    env: tuple[str, ...] = ()
    health_check_timeout: float = 120.0
    unload_timeout: float = 10.0

    @classmethod
    def from_model(cls, model: ModelConfig) -> UpstreamSettings:
        """The slice of a model's config its process needs."""
        return cls(
            model=model.id,
            cmd=model.cmd,
            proxy=model.proxy,
            check_endpoint=model.check_endpoint,
            cmd_stop=model.cmd_stop,
            env=tuple(model.env),
            health_check_timeout=float(model.health_check_timeout),
            unload_timeout=float(model.unload_timeout),
        )

    @property
    def health_url(self) -> str | None:
        endpoint = self.check_endpoint.strip()
        if endpoint.lower() == "none":
            return None
        return self.proxy.rstrip("/") + "/" + endpoint.lstrip("/")


# --- messages -------------------------------------------------------------------------

Reply = MemoryObjectSendStream[BaseException | None]


@dataclass
class _EnsureReady:
    reply: Reply


@dataclass
class _Stop:
    grace: float
    reply: Reply


@dataclass
class _Shutdown:
    grace: float
    reply: Reply


@dataclass
class _Spawned:
    generation: int
    upstream: Upstream


@dataclass
class _SpawnFailed:
    generation: int
    reason: str


@dataclass
class _Healthy:
    generation: int


@dataclass
class _HealthTimedOut:
    generation: int
    seconds: float


@dataclass
class _Exited:
    generation: int
    returncode: int


class Pending:
    """A reply the process actor owes; `await wait()` raises what the actor reports."""

    def __init__(self, receive: MemoryObjectReceiveStream[BaseException | None], model: str):
        self._receive = receive
        self._model = model

    async def wait(self) -> None:
        with self._receive:
            try:
                error = await self._receive.receive()
            except anyio.EndOfStream:
                raise ProcessShutdown(f"[{self._model}] shutdown") from None
        if error is not None:
            raise error

    def forget(self) -> None:
        """Nobody will wait for this reply."""
        self._receive.close()


def _answer(reply: Reply, error: BaseException | None = None) -> None:
    """Deliver a result; a caller that already left simply does not get it."""
    with contextlib.suppress(
        anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.WouldBlock
    ):
        reply.send_nowait(error)
    reply.close()


@dataclass
class _Waiters:
    """Callers parked on an outcome, answered all at once."""

    replies: list[Reply] = field(default_factory=list)

    def add(self, reply: Reply) -> None:
        self.replies.append(reply)

    def succeed(self) -> None:
        self._answer_all(lambda: None)

    def fail(self, make_error: Callable[[], BaseException]) -> None:
        self._answer_all(make_error)

    def take(self) -> list[Reply]:
        taken, self.replies = self.replies, []
        return taken

    def _answer_all(self, make: Callable[[], BaseException | None]) -> None:
        for reply in self.take():
            _answer(reply, make())

    def __bool__(self) -> bool:
        return bool(self.replies)


class _Announcer:
    """The machine's listener: turns every transition into a ProcessStateChanged."""

    def __init__(self, actor: ProcessActor) -> None:
        self._actor = actor

    def after_transition(self, source: Any, target: Any) -> None:
        self._actor._announce(source.id, target.id)


# --- the actor ------------------------------------------------------------------------


class ProcessActor:
    """Owns one upstream's lifecycle. Start it with `await task_group.start(actor.run)`."""

    def __init__(
        self,
        settings: UpstreamSettings,
        *,
        log_ring: LogRing | None = None,
        on_change: Callable[[ProcessStateChanged], None] | None = None,
        launcher: Launcher = SUBPROCESSES,
    ) -> None:
        self.settings = settings
        self._launcher = launcher
        self.model = settings.model
        self.log = log_ring or LogRing(settings.model)
        self._listeners: list[Callable[[ProcessStateChanged], None]] = []
        if on_change:
            self._listeners.append(on_change)
        self._machine = ProcessMachine(listeners=[_Announcer(self)])
        self._send, self._inbox = anyio.create_memory_object_stream[Any](math.inf)
        self._tg: TaskGroup | None = None
        self._generation = 0
        self._upstream: Upstream | None = None
        self._health_scope: anyio.CancelScope | None = None
        self._terminating = False
        self._grace = settings.unload_timeout
        self._reason = ""
        self._started_at = 0.0
        self._ready_waiters = _Waiters()  # want ready; the current start decides
        self._restart_waiters = _Waiters()  # want ready; arrived during a stop
        self._stop_waiters = _Waiters()
        self._shutdown_waiters = _Waiters()
        self._shutting_down = False

    # -- public API (safe from any task) ------------------------------------------------

    @property
    def state(self) -> str:
        """The current state, for display only: never decide on it from outside the actor."""
        return str(self._machine.current_state_value)

    @property
    def pid(self) -> int | None:
        return self._upstream.pid if self._upstream else None

    def add_listener(self, listener: Callable[[ProcessStateChanged], None]) -> None:
        """Call `listener(event)` on every state change (synchronously, in the actor)."""
        self._listeners.append(listener)

    def request_ready(self) -> Pending:
        """Post an ensure-ready now; await the result with `.wait()`.

        Posting is synchronous so the router can order messages to one process exactly
        as it decided them (a ttl stop decided first is handled first).
        """
        return self._request(_EnsureReady)

    def request_stop(self, grace: float | None = None) -> Pending:
        """Post a stop now (idempotent); SIGKILL after `grace` (default unloadTimeout) s."""
        grace = self.settings.unload_timeout if grace is None else grace
        return self._request(lambda reply: _Stop(grace, reply))

    def request_shutdown(self, grace: float | None = None) -> Pending:
        """Post a shutdown now: stop the upstream and end the actor for good."""
        grace = self.settings.unload_timeout if grace is None else grace
        return self._request(lambda reply: _Shutdown(grace, reply))

    async def ensure_ready(self) -> None:
        """Return once the upstream is ready, starting it if needed; raise StartFailed."""
        await self.request_ready().wait()

    async def stop(self, grace: float | None = None) -> None:
        await self.request_stop(grace).wait()

    async def shutdown(self, grace: float | None = None) -> None:
        with contextlib.suppress(ProcessShutdown):
            await self.request_shutdown(grace).wait()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            async with self._inbox:
                async for message in self._inbox:
                    self._handle(message)
                    if self.state == "shutdown":
                        break
            self._send.close()
            tg.cancel_scope.cancel()

    def _announce(self, old: str, new: str) -> None:
        event = ProcessStateChanged(self.model, old, new, reason=self._reason)
        self._reason = ""
        for listener in list(self._listeners):
            listener(event)

    # -- plumbing ---------------------------------------------------------------------------

    def _request(self, make_message: Callable[[Reply], Any]) -> Pending:
        send, receive = anyio.create_memory_object_stream[BaseException | None](1)
        try:
            self._send.send_nowait(make_message(send))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            send.close()
        return Pending(receive, self.model)

    def _post(self, message: Any) -> None:
        # If the actor is gone, child-task reports no longer matter.
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._send.send_nowait(message)

    def _transition(self, event: str, reason: str = "") -> None:
        self._reason = reason
        self._machine.send(event)

    def _spawn_child(self, func: Callable[..., Any], *args: Any) -> None:
        assert self._tg is not None, "ProcessActor.run() is not running"
        self._tg.start_soon(func, *args)

    # -- message handling (runs only in the actor task) -----------------------------------

    def _handle(self, message: Any) -> None:
        match message:
            case _EnsureReady():
                self._on_ensure_ready(message)
            case _Stop():
                self._on_stop(message)
            case _Shutdown():
                self._on_shutdown(message)
            case _Spawned():
                self._on_spawned(message)
            case _SpawnFailed():
                if message.generation == self._generation:
                    self._after_exit(message.reason)
            case _Healthy():
                if message.generation == self._generation and self.state == "starting":
                    self._became_ready()
            case _HealthTimedOut():
                if message.generation == self._generation and self.state == "starting":
                    reason = f"health check timed out after {message.seconds:g}s"
                    self._begin_stop(HEALTH_FAILURE_STOP_GRACE, reason, StartFailed)
            case _Exited():
                self._on_exited(message)
            case _:
                raise TypeError(f"unexpected message {message!r}")

    def _on_ensure_ready(self, message: _EnsureReady) -> None:
        state = self.state
        if state == "ready":
            _answer(message.reply)
        elif state == "starting":
            self._ready_waiters.add(message.reply)
        elif state == "stopped":
            self._ready_waiters.add(message.reply)
            self._start()
        elif state == "stopping" and not self._shutting_down:
            self._restart_waiters.add(message.reply)  # start again once the stop completes
        else:
            _answer(message.reply, self._shutdown_error())

    def _on_stop(self, message: _Stop) -> None:
        state = self.state
        if state == "stopped":
            _answer(message.reply)
            return
        if state == "shutdown":
            _answer(message.reply, self._shutdown_error())
            return
        self._stop_waiters.add(message.reply)
        self._restart_waiters.fail(lambda: StartAborted(f"[{self.model}] stopped before start"))
        if state in ("starting", "ready"):
            self._begin_stop(message.grace, "stop requested", StartAborted)

    def _on_shutdown(self, message: _Shutdown) -> None:
        self._shutting_down = True
        self._shutdown_waiters.add(message.reply)
        self._restart_waiters.fail(self._shutdown_error)
        state = self.state
        if state in ("starting", "ready"):
            self._begin_stop(message.grace, "shutting down", ProcessShutdown)
        elif state in ("stopped", "shutdown"):
            self._finish_shutdown()

    def _on_spawned(self, message: _Spawned) -> None:
        if message.generation != self._generation:
            return
        self._upstream = message.upstream
        log.info("[%s] started pid %d", self.model, message.upstream.pid)
        if self.state == "stopping":  # a stop arrived while we were spawning
            self._spawn_terminator()
        elif self.state == "starting":
            url = self.settings.health_url
            if url is None:
                self._became_ready()
            else:
                self._health_scope = anyio.CancelScope()
                self._spawn_child(
                    self._poll_health, self._generation, message.upstream, url, self._health_scope
                )

    def _on_exited(self, message: _Exited) -> None:
        if message.generation != self._generation:
            return
        self._upstream = None
        self._cancel_health()
        code = message.returncode
        if self.state == "starting":
            reason = f"upstream command exited prematurely with code {code}"
        elif self.state == "ready":
            reason = f"upstream exited unexpectedly with code {code}"
        else:
            reason = f"exited with code {code}"
        tail = self.log.tail(LAST_LINES_IN_ERRORS)
        if tail and self.state != "stopping":
            reason += "; last log lines:\n" + "\n".join(tail)
        self._after_exit(reason)

    # -- lifecycle steps -----------------------------------------------------------------------

    def _start(self) -> None:
        self._generation += 1
        self._started_at = time.monotonic()
        self._transition("start")
        try:
            argv = split_command(self.settings.cmd)
        except ValueError as exc:
            self._after_exit(f"unable to get sanitized command: {exc}")
            return
        log.info("[%s] starting: %s", self.model, " ".join(argv))
        self._spawn_child(self._supervise, self._generation, argv)

    def _became_ready(self) -> None:
        elapsed = time.monotonic() - self._started_at
        self._transition("healthy", f"ready after {elapsed:.3f}s")
        log.info("[%s] ready after %.3fs", self.model, elapsed)
        self._ready_waiters.succeed()

    def _begin_stop(self, grace: float, reason: str, error: type[StartFailed]) -> None:
        """starting|ready -> stopping: fail whoever waited for ready with `error`, signal."""
        self._transition("stop", reason)
        self._cancel_health()
        self._grace = grace
        self._terminating = False
        self._ready_waiters.fail(lambda: error(f"[{self.model}] {reason}"))
        if self._upstream is not None:
            self._spawn_terminator()

    def _spawn_terminator(self) -> None:
        if self._terminating or self._upstream is None:
            return
        self._terminating = True
        stop_argv = None
        if self.settings.cmd_stop.strip():
            try:
                stop_argv = split_command(
                    self.settings.cmd_stop.replace("${PID}", str(self._upstream.pid))
                )
            except ValueError:
                log.warning("[%s] cmdStop is empty after splitting: SIGTERM", self.model)
        env = merged_environment(self.settings.env)
        self._spawn_child(self._upstream.terminate, self._grace, stop_argv, env)

    def _after_exit(self, reason: str) -> None:
        """The upstream is gone (or never came): settle every waiter from the state we are in."""
        state = self.state
        self._upstream = None
        self._terminating = False
        if state == "starting":
            log.warning("[%s] start failed: %s", self.model, reason)
            self._transition("start_failed", reason)
            self._ready_waiters.fail(lambda: StartFailed(f"[{self.model}] {reason}"))
        elif state == "ready":
            log.warning("[%s] %s", self.model, reason)
            self._transition("crashed", reason)
        elif state == "stopping":
            if self._shutting_down:
                self._finish_shutdown()
                return
            self._transition("exited", reason)
            log.info("[%s] stopped", self.model)
        self._stop_waiters.succeed()
        if self._shutting_down:
            self._finish_shutdown()
        elif self._restart_waiters and self.state == "stopped":
            for reply in self._restart_waiters.take():
                self._ready_waiters.add(reply)
            self._start()

    def _finish_shutdown(self) -> None:
        if self.state != "shutdown":
            self._transition("shut_down")
        self._ready_waiters.fail(self._shutdown_error)
        self._restart_waiters.fail(self._shutdown_error)
        self._stop_waiters.succeed()
        self._shutdown_waiters.succeed()

    def _shutdown_error(self) -> ProcessShutdown:
        return ProcessShutdown(f"[{self.model}] shutdown")

    def _cancel_health(self) -> None:
        if self._health_scope is not None:
            self._health_scope.cancel()
            self._health_scope = None

    # -- child tasks (report back through the inbox) ---------------------------------------

    async def _supervise(self, generation: int, argv: list[str]) -> None:
        try:
            env = merged_environment(self.settings.env)
            upstream = self._launcher.spawn(argv, env, self.log)
        except OSError as exc:
            detail = exc.strerror or str(exc)
            self._post(
                _SpawnFailed(generation, f"failed to start command '{' '.join(argv)}': {detail}")
            )
            return
        self._post(_Spawned(generation, upstream))
        code = await upstream.supervise()
        self._post(_Exited(generation, code))

    async def _poll_health(
        self, generation: int, upstream: Upstream, url: str, scope: anyio.CancelScope
    ) -> None:
        with scope:
            timeout = self.settings.health_check_timeout
            try:
                await self._launcher.wait_healthy(upstream, url, timeout)
            except HealthTimeout:
                self._post(_HealthTimedOut(generation, timeout))
            else:
                self._post(_Healthy(generation))
