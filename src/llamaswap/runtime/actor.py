"""The plumbing every actor shares: an inbox, one task that owns the state, child tasks for
slow work, and request/reply for callers outside the actor.

An actor's state changes only inside `handle`, which runs in the actor's own task, one
message at a time. Anything that takes time runs as a child task (`spawn_child`) and
reports back by posting a message. Callers outside the actor either `post` (fire and
forget, in the order they decide) or `call` (post and await the answer). After every
batch of messages that were already waiting, `after_batch` runs once: under load many
messages arrive per loop turn, and per-batch work (timers, snapshots) need not run for
each.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

Reply = MemoryObjectSendStream[BaseException | None]


class ActorGone(Exception):
    """The actor has finished: it accepts no more messages and owes no more answers."""


def answer(reply: Reply, error: BaseException | None = None) -> None:
    """Deliver a result; a caller that already left simply does not get it."""
    with contextlib.suppress(
        anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.WouldBlock
    ):
        reply.send_nowait(error)
    reply.close()


class Actor:
    """Base of the process and router actors. Start with `await tg.start(actor.run)`."""

    def __init__(self) -> None:
        self._send, self._inbox = anyio.create_memory_object_stream[Any](math.inf)
        self._tg: TaskGroup | None = None

    # -- for subclasses ------------------------------------------------------------------

    def handle(self, message: Any) -> None:
        """Apply one message (runs only in the actor's task)."""
        raise NotImplementedError

    def after_batch(self) -> None:
        """Runs once after the messages that were waiting have all been handled."""

    @property
    def finished(self) -> bool:
        """True once the actor has nothing left to do: `run` returns."""
        return False

    def on_started(self) -> None:
        """Runs in the actor's task before the first message (child tasks may start)."""

    # -- for everyone -----------------------------------------------------------------------

    def post(self, message: Any) -> bool:
        """Queue a message; False when the actor has finished (the message is dropped)."""
        try:
            self._send.send_nowait(message)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return False
        return True

    async def call(self, make_message: Callable[[Reply], Any]) -> None:
        """Post `make_message(reply)` and wait for the actor's answer (raised if an error)."""
        send, receive = anyio.create_memory_object_stream[BaseException | None](1)
        with receive:
            if not self.post(make_message(send)):
                send.close()
                raise ActorGone()
            try:
                error = await receive.receive()
            except anyio.EndOfStream:
                raise ActorGone() from None
        if error is not None:
            raise error

    def spawn_child(self, func: Callable[..., Any], *args: Any) -> None:
        """Run slow work beside the actor; it reports back with `post`."""
        assert self._tg is not None, f"{type(self).__name__}.run() is not running"
        self._tg.start_soon(func, *args)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            self.on_started()
            task_status.started()
            async with self._inbox:
                async for message in self._inbox:
                    self.handle(message)
                    if not self._handle_waiting():
                        break
                    self.after_batch()
                self._send.close()
                self._drop_leftovers()
            tg.cancel_scope.cancel()

    def _drop_leftovers(self) -> None:
        """Messages that arrived after the end: their callers get `ActorGone`, not silence."""
        while True:
            try:
                message = self._inbox.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream):
                return
            reply = getattr(message, "reply", None)
            if reply is not None:
                reply.close()

    def _handle_waiting(self) -> bool:
        """Handle every message already waiting; False once the actor has finished."""
        while not self.finished:
            try:
                message = self._inbox.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream):
                return True  # the `async for` waits for, or notices the end of, the inbox
            self.handle(message)
        return False
