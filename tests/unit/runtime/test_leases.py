"""Lease revocation, both ways a holder can be reached: the cancel scope (made on first
use, already cancelled when the lease was revoked before) and the held task (cancelled
natively; the holder learns it was the revocation and takes the cancel back)."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from llamaswap.runtime.leases import Lease, Ticket

pytestmark = pytest.mark.anyio


def lease() -> Lease:
    return Lease(1, "m", "http://127.0.0.1:1")


async def test_a_scope_made_after_the_revocation_is_already_cancelled() -> None:
    revoked = lease()
    revoked.revoke("unloaded")
    with revoked.scope:
        await anyio.sleep(1)
    assert revoked.scope.cancelled_caught and revoked.revoked == "unloaded"


async def test_a_revocation_cancels_the_holding_task_once() -> None:
    held = lease()
    outcome: list[str] = []

    async def holder() -> None:
        task = asyncio.current_task()
        assert task is not None
        held.hold(task)
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            if held.unhold() and task.uncancel() == 0:
                outcome.append("revoked")
                return
            raise
        finally:
            held.unhold()

    task = asyncio.ensure_future(holder())
    await asyncio.sleep(0)
    held.revoke("crashed")
    held.revoke("again")  # the first reason stays, nothing is cancelled twice
    await task
    assert outcome == ["revoked"] and held.revoked == "crashed"
    assert not held.unhold()  # a holder that was not cancelled hears nothing


async def test_a_client_leaving_during_a_revocation_still_cancels() -> None:
    held = lease()

    async def holder() -> None:
        task = asyncio.current_task()
        assert task is not None
        held.hold(task)
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            if held.unhold() and task.uncancel() == 0:
                return
            raise

    task = asyncio.ensure_future(holder())
    await asyncio.sleep(0)
    held.revoke("unloaded")
    task.cancel()  # the client left in the same loop turn
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_ticket_delivers_once_and_hands_back_a_late_lease() -> None:
    ticket = Ticket(1, "m")
    waiter = asyncio.ensure_future(ticket.outcome())
    await asyncio.sleep(0)
    granted = lease()
    assert ticket.offer(granted) and not ticket.offer(lease())
    assert await waiter is granted
    assert ticket.abandon() is granted  # taken by the caller: it must finish it
    left = Ticket(2, "m")
    assert left.abandon() is None and not left.offer(lease())
