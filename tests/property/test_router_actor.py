"""Hypothesis drives the real router actor (and real process actors) through a blocking portal.

The pure-scheduler exploration cannot see interleavings that only the actors create:
a cancellation racing a grant, a stop message overtaking a start, replies to clients
that already left. Here one event loop runs in a background thread; each rule does one
thing (a client arrives, leaves or finishes; an upstream becomes healthy, fails,
stops, crashes; an operator unloads) and then waits until every task is blocked again,
so each step is deterministic. The fake upstreams' gates are the scheduler.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from llamaswap.config import parse_config
from llamaswap.runtime.router import RouterActor
from llamaswap.scheduling import RoutingError
from llamaswap.testing.gated import GatedLauncher

MODELS = ["a", "b", "c"]
CONFIG = textwrap.dedent(
    """
    models:
      a: {cmd: "fake a --port ${PORT}"}
      b: {cmd: "fake b --port ${PORT}", concurrencyLimit: 2}
      c: {cmd: "fake c --port ${PORT}"}
    groups:
      pair:
        swap: true
        members: [a, b]
      side:
        swap: true
        exclusive: false
        members: [c]
    """
)
SWAP_GROUPS = [{"a", "b"}]


async def settle() -> None:
    """Yield until no other task can run: every task waits on something external."""
    current = asyncio.current_task()
    for _ in range(10_000):
        await asyncio.sleep(0)
        runnable = [
            task
            for task in asyncio.all_tasks()
            if task is not current and not task.done() and task._fut_waiter is None  # private
        ]
        if not runnable:
            for _ in range(3):
                await asyncio.sleep(0)
            return
    raise AssertionError("the actors never went quiet")


@dataclass
class Client:
    model: str
    release: anyio.Event
    outcome: str = "waiting"  # waiting | holding | done | rejected | cancelled | left | revoked
    future: Future[Any] | None = None
    unloaded_while_holding: bool = False


@dataclass
class World:
    portal: BlockingPortal
    router: RouterActor
    launcher: GatedLauncher
    clients: list[Client] = field(default_factory=list)
    unloads: set[str] = field(default_factory=set)  # models an operator unloaded since start


async def _client(world: World, client: Client) -> None:
    try:
        async with world.router.lease(client.model) as lease:
            client.outcome = "holding"
            with lease.scope:  # as the HTTP handler does: a revoked lease ends the request
                await client.release.wait()
        client.outcome = "revoked" if lease.scope.cancelled_caught else "done"
    except RoutingError:
        client.outcome = "rejected"
    except anyio.get_cancelled_exc_class():
        client.outcome = "cancelled" if client.outcome == "waiting" else "left"
        raise


@contextmanager
def running_world() -> Iterator[World]:
    with start_blocking_portal() as portal:
        launcher = portal.call(lambda: GatedLauncher(auto_ready=False, auto_stop=False))
        router = RouterActor(parse_config(CONFIG), launcher=launcher)
        done = portal.start_task_soon(router.run)
        world = World(portal, router, launcher)
        try:
            yield world
        finally:
            portal.call(_teardown, world)
            done.result(timeout=30)


async def _teardown(world: World) -> None:
    world.launcher.open_all_gates()
    world.launcher.auto_ready = True
    for upstreams in world.launcher.upstreams.values():
        for upstream in upstreams:
            upstream.become_healthy()
    with anyio.fail_after(20):
        await world.router.shutdown(1)


class RouterActorExploration(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._context = running_world()
        self.world = self._context.__enter__()

    def step(self, function: Any, *args: Any) -> Any:
        result = self.world.portal.call(function, *args)
        self.world.portal.call(settle)
        return result

    # -- clients -----------------------------------------------------------------------

    @rule(model=st.sampled_from(MODELS))
    def client_arrives(self, model: str) -> None:
        world = self.world
        client = Client(model, world.portal.call(anyio.Event))
        world.clients.append(client)
        client.future = world.portal.start_task_soon(_client, world, client)
        self.step(settle)

    def _with(self, outcome: str) -> list[int]:
        return [i for i, c in enumerate(self.world.clients) if c.outcome == outcome]

    @precondition(lambda self: bool(self._with("holding")))
    @rule(data=st.data())
    def client_finishes(self, data: st.DataObject) -> None:
        index = data.draw(st.sampled_from(self._with("holding")))
        self.step(self.world.clients[index].release.set)

    @precondition(lambda self: bool(self._with("waiting") + self._with("holding")))
    @rule(data=st.data())
    def client_leaves(self, data: st.DataObject) -> None:
        index = data.draw(st.sampled_from(self._with("waiting") + self._with("holding")))
        future = self.world.clients[index].future
        assert future is not None
        future.cancel()
        self.step(settle)

    # -- upstreams and operators -----------------------------------------------------------

    def _upstreams(self, predicate: Any) -> list[tuple[str, int]]:
        found = []
        for model, upstreams in sorted(self.world.launcher.upstreams.items()):
            for index, upstream in enumerate(upstreams):
                if upstream.returncode is None and predicate(upstream):
                    found.append((model, index))
        return found

    def _starting(self) -> list[tuple[str, int]]:
        return self._upstreams(lambda u: not u.healthy.is_set())

    @precondition(lambda self: bool(self._starting()))
    @rule(data=st.data(), healthy=st.sampled_from([True, True, True, False]))
    def upstream_settles(self, data: st.DataObject, healthy: bool) -> None:
        model, index = data.draw(st.sampled_from(self._starting()))
        upstream = self.world.launcher.upstreams[model][index]
        self.step(upstream.become_healthy if healthy else upstream.fail_health)

    def _stopping(self) -> list[tuple[str, int]]:
        return self._upstreams(lambda u: u.stop_requested.is_set() and not u.stop_allowed.is_set())

    @precondition(lambda self: bool(self._stopping()))
    @rule(data=st.data())
    def upstream_stops(self, data: st.DataObject) -> None:
        model, index = data.draw(st.sampled_from(self._stopping()))
        self.step(self.world.launcher.upstreams[model][index].allow_stop)

    def _alive(self) -> list[tuple[str, int]]:
        return self._upstreams(lambda u: u.healthy.is_set() and not u.stop_requested.is_set())

    @precondition(lambda self: bool(self._alive()))
    @rule(data=st.data())
    def upstream_crashes(self, data: st.DataObject) -> None:
        model, index = data.draw(st.sampled_from(self._alive()))
        self.step(self.world.launcher.upstreams[model][index].exit, 1)

    @rule(model=st.sampled_from(MODELS))
    def operator_unloads(self, model: str) -> None:
        world = self.world
        for client in world.clients:
            if client.model == model and client.outcome == "holding":
                client.unloaded_while_holding = True
        world.unloads.add(model)
        world.portal.start_task_soon(world.router.unload, [model])
        self.step(settle)

    # -- judgement ---------------------------------------------------------------------------------

    @invariant()
    def in_flight_matches_holders(self) -> None:
        world = self.world
        holders: dict[str, int] = {}
        for client in world.clients:
            if client.outcome == "holding":
                holders[client.model] = holders.get(client.model, 0) + 1
        scheduler = world.router._scheduler
        counted = {m: scheduler.in_flight(m) for m in MODELS if scheduler.in_flight(m)}
        assert counted == holders, f"scheduler counts {counted}, clients hold {holders}"

    @invariant()
    def swap_groups_never_run_together(self) -> None:
        running = self.world.launcher.running()
        for group in SWAP_GROUPS:
            assert len(running & group) <= 1, f"{sorted(running & group)} run together"

    @invariant()
    def busy_models_are_only_stopped_by_operators_or_crashes(self) -> None:
        for client in self.world.clients:
            if client.outcome != "holding" or client.unloaded_while_holding:
                continue
            upstream = self.world.launcher.upstreams[client.model][-1]
            assert not upstream.stop_requested.is_set(), f"{client.model} stopped while serving"

    def teardown(self) -> None:
        """Liveness: once every upstream cooperates and every client finishes, nobody waits."""
        world = self.world
        try:
            world.portal.call(self._cooperate)
            stuck = [c for c in world.clients if c.outcome in ("waiting", "holding")]
            assert not stuck, f"clients still waiting: {[(c.model, c.outcome) for c in stuck]}"
        finally:
            self._context.__exit__(None, None, None)

    async def _cooperate(self) -> None:
        world = self.world
        world.launcher.auto_ready = True
        world.launcher.open_all_gates()
        with anyio.fail_after(20):
            while any(c.outcome in ("waiting", "holding") for c in world.clients):
                for upstreams in world.launcher.upstreams.values():
                    for upstream in upstreams:
                        upstream.become_healthy()
                for client in world.clients:
                    client.release.set()
                await settle()


TestRouterActor = RouterActorExploration.TestCase
TestRouterActor.settings = settings(
    max_examples=60,
    stateful_step_count=25,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_settle_notices_a_runnable_task() -> None:
    async def main() -> None:
        ticks = 0

        async def spinner() -> None:
            nonlocal ticks
            for _ in range(5):
                ticks += 1
                await asyncio.sleep(0)

        async with anyio.create_task_group() as tg:
            tg.start_soon(spinner)
            await settle()
            assert ticks == 5

    anyio.run(main)


pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
