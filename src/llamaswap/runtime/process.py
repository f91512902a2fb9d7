"""The process actor: one task runs one upstream's `ProcessCore` and performs its effects.

The decisions are the core's (and so the spec's): this module only does the I/O the
core asks for. `Spawn` runs the command in a child task that reports `Spawned` and,
later, `Exited`; `PollHealth` polls the health endpoint in a child task that reports
`Healthy` or `HealthTimedOut`; `Terminate` stops the process group in a child task
(whose end shows up as `Exited`); `Announce` tells the listeners (the router) about the
new state. Nothing here branches on a state.

Callers command the process with `request_start`, `request_stop` and `request_shutdown`
(posted at once, so the router's commands arrive in the order it decided them) and learn
what happened only from the announcements. `ensure_ready`, `stop` and `shutdown` also
wait for the announced outcome, for callers (tests, tools) that await one process.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio

from llamaswap.config import ModelConfig, split_command
from llamaswap.fsm.names import (
    PROCESS_ERROR,
    PROCESS_FINAL,
    PROCESS_HOLDS_RESOURCES,
    PROCESS_LOADING,
    PROCESS_SERVING,
    ProcessEvent,
    ProcessState,
)
from llamaswap.lifecycle.process import (
    Acknowledge,
    Announce,
    Effect,
    Exited,
    HealthTimedOut,
    Healthy,
    Message,
    PollHealth,
    ProcessCore,
    RestoreSlots,
    SaveSlots,
    ShutDown,
    SlotsRestored,
    SlotsSaved,
    Spawn,
    Spawned,
    SpawnFailed,
    Start,
    Stop,
    StopHealthCheck,
    Terminate,
)

from .actor import Actor, ActorGone, Reply, answer
from .events import ProcessStateChanged
from .health import HealthTimeout
from .launcher import SUBPROCESSES, Launcher, Upstream
from .logs import LogRing
from .slots import restore_slots, save_slots, slot_prefix, slot_save_path
from .spawn import merged_environment

log = logging.getLogger("llamaswap.process")

LAST_LINES_IN_ERRORS = 5
LOADING_PROGRESS_SECONDS = 5.0  # a loading model says how long it has been loading


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
    slot_dir: str = ""  # llama-server's --slot-save-path: prompt caches survive a stop
    slot_timeout: float = 30.0

    @classmethod
    def from_model(cls, model: ModelConfig) -> UpstreamSettings:
        """The slice of a model's config its process needs."""
        slot_dir = ""
        if model.persist_slots:
            try:
                slot_dir = slot_save_path(split_command(model.cmd))
            except ValueError:
                slot_dir = ""
        return cls(
            model=model.id,
            cmd=model.cmd,
            proxy=model.proxy,
            check_endpoint=model.check_endpoint,
            cmd_stop=model.cmd_stop,
            env=tuple(model.env),
            health_check_timeout=float(model.health_check_timeout),
            unload_timeout=float(model.unload_timeout),
            slot_dir=slot_dir,
            slot_timeout=model.persist_slots_timeout,
        )

    @property
    def slot_prefix(self) -> str:
        return slot_prefix(self.model, self.cmd, self.proxy)

    @property
    def health_url(self) -> str | None:
        endpoint = self.check_endpoint.strip()
        if endpoint.lower() == "none":
            return None
        return self.proxy.rstrip("/") + "/" + endpoint.lstrip("/")


# --- messages only the actor sees ------------------------------------------------------


@dataclass
class _Launched:
    """A child task spawned the command (the core hears `Spawned`)."""

    generation: int
    upstream: Upstream


# What a watch decides: an error to raise, None (done) or False (keep waiting).
Verdict = BaseException | bool | None


@dataclass
class _Watch:
    """Answer `reply` once `verdict(core, announcement)` gives an outcome."""

    verdict: Callable[[ProcessCore, Announce | None], Verdict]
    reply: Reply


def _ready_verdict(core: ProcessCore, _announced: Announce | None) -> Verdict:
    """For `ensure_ready`: None when ready, an error when it will not be, False: wait."""
    state = core.state
    if state in PROCESS_SERVING:
        return None
    if state in PROCESS_ERROR:
        return StartFailed(f"[{core.model}] {core.fault}")
    if state in PROCESS_FINAL or state is ProcessState.SHUTTING_DOWN:
        return ProcessShutdown(f"[{core.model}] shutdown")
    if state not in PROCESS_HOLDS_RESOURCES:
        return StartAborted(f"[{core.model}] stopped before it became ready")
    return False


def _stopped_verdict(core: ProcessCore, announced: Announce | None) -> Verdict:
    """For `stop`: done at rest, or once the process exited (a start may follow at once)."""
    exited = announced is not None and announced.event is ProcessEvent.EXITED
    return None if exited or core.state not in PROCESS_HOLDS_RESOURCES else False


def _final_verdict(core: ProcessCore, _announced: Announce | None) -> Verdict:
    return None if core.state in PROCESS_FINAL else False


class ProcessActor(Actor):
    """Owns one upstream's lifecycle. Start it with `await task_group.start(actor.run)`."""

    def __init__(
        self,
        settings: UpstreamSettings,
        *,
        log_ring: LogRing | None = None,
        on_change: Callable[[ProcessStateChanged], None] | None = None,
        launcher: Launcher = SUBPROCESSES,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.model = settings.model
        self.log = log_ring or LogRing(settings.model)
        self.core = ProcessCore(
            settings.model,
            health_check=settings.health_url is not None,
            persist_slots=bool(settings.slot_dir),
        )
        self._launcher = launcher
        self._listeners: list[Callable[[ProcessStateChanged], None]] = []
        if on_change:
            self._listeners.append(on_change)
        # handles of the current spawn (data, not decisions)
        self._upstream: Upstream | None = None
        self._health_scope: anyio.CancelScope | None = None
        self._spawned_at = 0.0
        self._log_mark = 0
        self._watches: list[_Watch] = []
        self._progress: anyio.CancelScope | None = None  # the loading progress lines

    # -- public API (safe from any task) ------------------------------------------------

    @property
    def state(self) -> ProcessState:
        """The current state, for display only: never decide on it from outside the actor."""
        return self.core.state

    @property
    def fault(self) -> str:
        """Why the last start failed (empty unless the state is failed), for display."""
        return self.core.fault if self.core.state in PROCESS_ERROR else ""

    @property
    def pid(self) -> int | None:
        return self._upstream.pid if self._upstream else None

    def add_listener(self, listener: Callable[[ProcessStateChanged], None]) -> None:
        """Call `listener(event)` on every state change (synchronously, in the actor)."""
        self._listeners.append(listener)

    def request_start(self, reason: str = "") -> bool:
        """Post a start now; False when the actor has finished."""
        return self.post(Start(reason))

    def request_stop(self, grace: float | None = None, reason: str = "") -> bool:
        """Post a stop now; SIGKILL after `grace` (default unloadTimeout) seconds."""
        grace = self.settings.unload_timeout if grace is None else grace
        return self.post(Stop(grace, reason))

    def request_shutdown(self, grace: float | None = None, reason: str = "") -> bool:
        """Post a shutdown now: stop the upstream and end the actor for good."""
        grace = self.settings.unload_timeout if grace is None else grace
        return self.post(ShutDown(grace, reason))

    async def ensure_ready(self) -> None:
        """Start the upstream if needed and return once it is ready; raise StartFailed."""
        self.request_start("requested")
        await self._wait(_ready_verdict)

    async def stop(self, grace: float | None = None) -> None:
        """Stop the upstream and return once it no longer runs."""
        self.request_stop(grace, "requested")
        await self._wait(_stopped_verdict)

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop the upstream for good and return once the actor has finished."""
        self.request_shutdown(grace, "shutting down")
        with contextlib.suppress(ActorGone, ProcessShutdown):
            await self._wait(_final_verdict)

    async def _wait(self, verdict: Callable[[ProcessCore, Announce | None], Verdict]) -> None:
        try:
            await self.call(lambda reply: _Watch(verdict, reply))
        except ActorGone:
            raise ProcessShutdown(f"[{self.model}] shutdown") from None

    # -- the actor ---------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.core.state in PROCESS_FINAL

    def handle(self, message: Any) -> None:
        if isinstance(message, _Watch):
            self._watches.append(message)
            self._settle_watches(None)
            return
        if isinstance(message, _Launched):
            message = self._launched(message)
            if message is None:
                return
        self._perform(self.core.handle(message))

    def _launched(self, message: _Launched) -> Message | None:
        if message.generation != self.core.generation:  # cannot happen (FIFO); never leak it
            self.spawn_child(message.upstream.terminate, 0.0, None, {})
            return None
        self._upstream = message.upstream
        log.info("[%s] started pid %d", self.model, message.upstream.pid)
        return Spawned(message.generation, message.upstream.pid)

    def _perform(self, effects: list[Effect]) -> None:
        for effect in effects:
            match effect:
                case Spawn(generation=generation):
                    self._spawn(generation)
                case PollHealth(generation=generation):
                    self._poll(generation)
                case StopHealthCheck():
                    if self._health_scope is not None:
                        self._health_scope.cancel()
                        self._health_scope = None
                case Terminate(grace=grace):
                    self._terminate(grace)
                case SaveSlots(generation=generation):
                    self.spawn_child(self._save_slots, generation)
                case RestoreSlots(generation=generation):
                    self.spawn_child(self._restore_slots, generation)
                case Announce():
                    self._announce(effect)
                case Acknowledge(state=state, event=event, handled=handled):
                    ack = ProcessStateChanged(self.model, state, state, event, handled=handled)
                    for listener in list(self._listeners):
                        listener(ack)

    # -- effects -------------------------------------------------------------------------------

    def _spawn(self, generation: int) -> None:
        self._upstream = None
        self._spawned_at = time.monotonic()
        self._log_mark = self.log.mark()
        self.spawn_child(self._supervise, generation)

    def _poll(self, generation: int) -> None:
        url, upstream = self.settings.health_url, self._upstream
        assert url is not None and upstream is not None, "PollHealth needs a spawned upstream"
        self._health_scope = anyio.CancelScope()
        self.spawn_child(self._poll_health, generation, upstream, url, self._health_scope)

    def _terminate(self, grace: float) -> None:
        upstream = self._upstream
        assert upstream is not None, "Terminate needs a spawned upstream"
        stop_argv = None
        if self.settings.cmd_stop.strip():
            try:
                stop_argv = split_command(
                    self.settings.cmd_stop.replace("${PID}", str(upstream.pid))
                )
            except ValueError:
                log.warning("[%s] cmdStop is empty after splitting: SIGTERM", self.model)
        env = merged_environment(self.settings.env)
        self.spawn_child(upstream.terminate, grace, stop_argv, env)

    def _announce(self, effect: Announce) -> None:
        new = effect.new
        if new in PROCESS_ERROR:
            log.warning("[%s] %s: %s", self.model, _failure_kind(effect), effect.reason)
        elif effect.reason:
            log.info("[%s] %s -> %s: %s", self.model, effect.old, new, effect.reason)
        else:
            log.info("[%s] %s -> %s", self.model, effect.old, new)
        if new not in PROCESS_HOLDS_RESOURCES:
            self._upstream = None
        self._report_progress(new in PROCESS_LOADING)
        event = ProcessStateChanged(
            self.model,
            effect.old,
            new,
            event=effect.event,
            reason=effect.reason,
            handled=effect.handled,
        )
        for listener in list(self._listeners):
            listener(event)
        self._settle_watches(effect)

    def _report_progress(self, loading: bool) -> None:
        """While the model loads, log how long it has been loading every few seconds."""
        if loading and self._progress is None:
            self._progress = anyio.CancelScope()
            self.spawn_child(self._log_progress, self._progress, time.monotonic())
        elif not loading and self._progress is not None:
            self._progress.cancel()
            self._progress = None

    async def _log_progress(self, scope: anyio.CancelScope, since: float) -> None:
        with scope:
            while True:
                await anyio.sleep(LOADING_PROGRESS_SECONDS)
                elapsed = time.monotonic() - since
                log.info("[%s] still %s after %.0fs", self.model, self.core.state, elapsed)

    def _settle_watches(self, announced: Announce | None) -> None:
        waiting = []
        for watch in self._watches:
            outcome = watch.verdict(self.core, announced)
            if outcome is False:
                waiting.append(watch)
            else:
                answer(watch.reply, outcome if isinstance(outcome, BaseException) else None)
        self._watches = waiting

    def _tail(self) -> tuple[str, ...]:
        """The upstream's last lines of this attempt (not of an earlier one)."""
        return tuple(self.log.tail(LAST_LINES_IN_ERRORS, since=self._log_mark))

    # -- child tasks (report back through the inbox) ---------------------------------------

    async def _supervise(self, generation: int) -> None:
        try:
            argv = split_command(self.settings.cmd)
        except ValueError as exc:
            self.post(SpawnFailed(generation, f"unable to get sanitized command: {exc}"))
            return
        log.info("[%s] starting: %s", self.model, " ".join(argv))
        try:
            env = merged_environment(self.settings.env)
            upstream = self._launcher.spawn(argv, env, self.log, proxy=self.settings.proxy)
        except OSError as exc:
            detail = exc.strerror or str(exc)
            self.post(
                SpawnFailed(generation, f"failed to start command '{' '.join(argv)}': {detail}")
            )
            return
        self.post(_Launched(generation, upstream))
        code = await upstream.supervise()
        self.post(Exited(generation, code, self._tail()))

    async def _save_slots(self, generation: int) -> None:
        settings = self.settings
        detail = await save_slots(settings.proxy, settings.slot_prefix, settings.slot_timeout)
        self.post(SlotsSaved(generation, detail))

    async def _restore_slots(self, generation: int) -> None:
        settings = self.settings
        detail = await restore_slots(
            settings.proxy, settings.slot_prefix, settings.slot_dir, settings.slot_timeout
        )
        self.post(SlotsRestored(generation, detail))

    async def _poll_health(
        self, generation: int, upstream: Upstream, url: str, scope: anyio.CancelScope
    ) -> None:
        with scope:
            timeout = self.settings.health_check_timeout
            try:
                await self._launcher.wait_healthy(upstream, url, timeout)
            except HealthTimeout:
                self.post(HealthTimedOut(generation, timeout, self._tail()))
            else:
                self.post(Healthy(generation, time.monotonic() - self._spawned_at))


def _failure_kind(effect: Announce) -> str:
    if effect.old is ProcessState.READY:
        return "crashed"
    return "start failed"
