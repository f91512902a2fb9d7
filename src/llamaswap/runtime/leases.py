"""What a caller holds while it talks to an upstream, and how the router reaches it.

A `Ticket` is a request waiting for the router's decision: a one-slot reply stream
the router fills without ever blocking (`offer`), so a caller that has gone simply
cannot receive a grant and the grant does not count. A `Lease` is the grant: the
upstream to talk to, plus a cancel scope the router uses to cut the request short
when the model is unloaded or crashes (real llama-server stalls client streams after
SIGTERM instead of ending them, so the proxy must end them itself).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from llamaswap.scheduling import RoutingError


@dataclass(eq=False)
class Lease:
    """Permission to send one request to `model`'s upstream at `proxy`."""

    request_id: int
    model: str
    proxy: str
    priority: int = 0
    revoked: str = ""
    _scope: anyio.CancelScope | None = field(default=None, repr=False)
    # the task forwarding the request (`hold`), cancelled natively on revoke: cheaper
    # than a cancel scope on every request's path (see llamaswap.http.proxy)
    _holder: asyncio.Task[Any] | None = field(default=None, repr=False)
    _holder_cancelled: bool = field(default=False, repr=False)

    @property
    def scope(self) -> anyio.CancelScope:
        """The scope the holder runs its request in; the router cancels it to revoke.
        Made on first use, so a grant costs no cancel scope until someone enters it."""
        scope = self._scope
        if scope is None:
            scope = self._scope = anyio.CancelScope()
            if self.revoked:
                scope.cancel()
        return scope

    def hold(self, task: asyncio.Task[Any]) -> None:
        """`task` runs the request: a revocation cancels it (Task.cancel) until `unhold`."""
        self._holder = task
        self._holder_cancelled = False

    def unhold(self) -> bool:
        """The holder is done; True if a revocation cancelled it meanwhile (the holder
        then takes that cancellation back with Task.uncancel)."""
        self._holder = None
        cancelled, self._holder_cancelled = self._holder_cancelled, False
        return cancelled

    def revoke(self, reason: str) -> None:
        """End the request now (unload, crash, shutdown); the holder sees `revoked`."""
        if not self.revoked:
            self.revoked = reason
            if self._scope is not None:
                self._scope.cancel()
            if self._holder is not None:
                self._holder_cancelled = True
                self._holder.cancel()


Outcome = Lease | RoutingError


class Ticket:
    """A request waiting for the router's decision.

    Everything runs on one event loop, so a plain slot, a future and an `abandoned`
    flag give the guarantee the router needs without a stream per request: once the
    caller has abandoned the ticket no outcome can land, and an outcome that landed
    first is handed back by `abandon()`. The future is the loop's own (an anyio Event
    costs an asyncio.Event and a future per wait; this is every request's path).
    """

    __slots__ = (
        "_loop",
        "_outcome",
        "_waiter",
        "abandoned",
        "keep_alive",
        "key",
        "may_load",
        "model",
        "on_admitted",
        "on_position",
        "request_id",
    )

    def __init__(
        self,
        request_id: int,
        model: str,
        on_position: Callable[[int], None] | None = None,
        on_admitted: Callable[[], None] | None = None,
        may_load: bool = True,
        keep_alive: float | None = None,
        key: str = "",
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._loop = loop  # the router's: on Python 3.11 get_running_loop() is a getpid()
        self.request_id = request_id
        self.key = key
        self.model = model
        self.may_load = may_load
        self.keep_alive = keep_alive
        self.on_position = on_position
        self.on_admitted = on_admitted
        self.abandoned = False
        self._outcome: Outcome | None = None
        self._waiter: asyncio.Future[None] | None = None

    # -- router side (never blocks) ----------------------------------------------------

    def offer(self, outcome: Outcome) -> bool:
        """Deliver the decision; False when the caller has already left."""
        if self.abandoned or self._outcome is not None:
            return False
        self._outcome = outcome
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    def admitted(self) -> None:
        if self.on_admitted is not None:
            self.on_admitted()

    def position(self, position: int) -> None:
        if self.on_position is not None:
            self.on_position(position)

    # -- caller side -------------------------------------------------------------------------

    async def outcome(self) -> Outcome:
        if self._outcome is None:
            loop = self._loop or asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        assert self._outcome is not None
        return self._outcome

    def abandon(self) -> Lease | None:
        """The caller gives up; returns a lease that was delivered but not yet taken.

        Runs without awaiting, so the router cannot deliver in between: either the lease
        is already in the slot (the caller must finish it), or no grant can land later.
        """
        self.abandoned = True
        return self._outcome if isinstance(self._outcome, Lease) else None
