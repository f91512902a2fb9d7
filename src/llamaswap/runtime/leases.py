"""What a caller holds while it talks to an upstream, and how the router reaches it.

A `Ticket` is a request waiting for the router's decision: a one-slot reply stream
the router fills without ever blocking (`offer`), so a caller that has gone simply
cannot receive a grant and the grant does not count. A `Lease` is the grant: the
upstream to talk to, plus a cancel scope the router uses to cut the request short
when the model is unloaded or crashes (real llama-server stalls client streams after
SIGTERM instead of ending them, so the proxy must end them itself).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

from llamaswap.scheduling import RoutingError


@dataclass(eq=False)
class Lease:
    """Permission to send one request to `model`'s upstream at `proxy`."""

    request_id: int
    model: str
    proxy: str
    priority: int = 0
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    revoked: str = ""

    def revoke(self, reason: str) -> None:
        """End the request now (unload, crash, shutdown); the holder sees `revoked`."""
        if not self.revoked:
            self.revoked = reason
            self.scope.cancel()


Outcome = Lease | RoutingError


class Ticket:
    """A request waiting for the router's decision.

    Everything runs on one event loop, so a plain slot, an event and an `abandoned` flag
    give the guarantee the router needs without a stream per request: once the caller
    has abandoned the ticket no outcome can land, and an outcome that landed first is
    handed back by `abandon()`.
    """

    __slots__ = (
        "_delivered",
        "_outcome",
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
    ) -> None:
        self.request_id = request_id
        self.key = key
        self.model = model
        self.may_load = may_load
        self.keep_alive = keep_alive
        self.on_position = on_position
        self.on_admitted = on_admitted
        self.abandoned = False
        self._outcome: Outcome | None = None
        self._delivered = anyio.Event()

    # -- router side (never blocks) ----------------------------------------------------

    def offer(self, outcome: Outcome) -> bool:
        """Deliver the decision; False when the caller has already left."""
        if self.abandoned or self._outcome is not None:
            return False
        self._outcome = outcome
        self._delivered.set()
        return True

    def admitted(self) -> None:
        if self.on_admitted is not None:
            self.on_admitted()

    def position(self, position: int) -> None:
        if self.on_position is not None:
            self.on_position(position)

    # -- caller side -------------------------------------------------------------------------

    async def outcome(self) -> Outcome:
        await self._delivered.wait()
        assert self._outcome is not None
        return self._outcome

    def abandon(self) -> Lease | None:
        """The caller gives up; returns a lease that was delivered but not yet taken.

        Runs without awaiting, so the router cannot deliver in between: either the lease
        is already in the slot (the caller must finish it), or no grant can land later.
        """
        self.abandoned = True
        return self._outcome if isinstance(self._outcome, Lease) else None
