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

import asyncio
import contextlib
from collections import deque
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
        # The inbox is a deque and one loop future to wake the actor: every request
        # passes through the router's inbox twice, and an anyio memory stream costs an
        # Event and an extra checkpoint per wake-up.
        self._inbox: deque[Any] = deque()
        self._wakeup: asyncio.Future[None] | None = None
        self._closed = False
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
        if self._closed:
            return False
        self._inbox.append(message)
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)
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
            try:
                await self._serve()
                self._closed = True
                self._drop_leftovers()
            finally:
                self._closed = True
            tg.cancel_scope.cancel()

    async def _serve(self) -> None:
        """Handle batches until the actor has finished. Between batches it always
        yields to the loop once, as a stream receive would."""
        inbox = self._inbox
        loop = asyncio.get_running_loop()
        while True:
            if inbox:
                await asyncio.sleep(0)
            else:
                wakeup = self._wakeup = loop.create_future()
                try:
                    await wakeup
                finally:
                    self._wakeup = None
            self.handle(inbox.popleft())
            if not self._handle_waiting():
                return
            self.after_batch()

    def _drop_leftovers(self) -> None:
        """Messages that arrived after the end: their callers get `ActorGone`, not silence."""
        while self._inbox:
            message = self._inbox.popleft()
            reply = getattr(message, "reply", None)
            if reply is not None:
                reply.close()

    def _handle_waiting(self) -> bool:
        """Handle every message already waiting; False once the actor has finished."""
        inbox = self._inbox
        while not self.finished:
            if not inbox:
                return True
            self.handle(inbox.popleft())
        return False
