"""Decisions per second of the pure scheduler, and the lease round trip through the actor.

1. Pure core: submit + finish pairs on a ready model (the fast path every request
   takes), and a mixed workload with swaps (the processes' announcements fed back as
   the runtime would), against python-statemachine transitions in this run: a bare
   generated machine, and the process core (machine, ignores, actions, reasons) through
   one start/ready/stop cycle (why the per-request path stays plain code). Target
   (router issue): at least 50k decisions/s.
2. Actor: `async with router.lease(...)` round trips with 16 concurrent clients over
   gated fake processes, against a bare memory-stream ping-pong in the same loop.

    python benchmarks/scheduler.py [--requests 100000]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import save
from llamaswap.config import parse_config
from llamaswap.fsm import ProcessMachine
from llamaswap.fsm.inert import InertModel
from llamaswap.fsm.names import ProcessState
from llamaswap.lifecycle.process import Exited, Healthy, ProcessCore, Spawned, Start, Stop
from llamaswap.runtime.router import RouterActor
from llamaswap.scheduling import (
    Group,
    GroupPolicy,
    ModelRules,
    Request,
    RoutingError,
    Scheduler,
)
from llamaswap.testing.gated import GatedLauncher


class CountingEffects:
    def __init__(self) -> None:
        self.grants = 0
        self.swaps: list[str] = []

    def grant(self, request: Request) -> bool:
        self.grants += 1
        return True

    def reject(self, request: Request, error: RoutingError) -> None:
        pass

    def start(self, model: str, reason: str) -> None:
        pass

    def stop(self, model: str, reason: str, grace: float | None) -> None:
        pass

    def shut_down(self, model: str, reason: str) -> None:
        pass

    def revoke(self, model: str, reason: str) -> None:
        pass

    def replace(self, models: tuple[str, ...]) -> None:
        pass

    def swap_began(self, target: str, evict: tuple[str, ...]) -> None:
        self.swaps.append(target)

    def swap_ended(self, target: str, error: str | None) -> None:
        pass

    def probe(self, model: str) -> None:
        pass

    def learned(self, model: str, amounts: Mapping[str, float]) -> None:
        pass

    def positions(self, positions: Mapping[int, int]) -> None:
        pass


def fast_path_rate(count: int) -> float:
    models = [f"m{i}" for i in range(8)]
    effects = CountingEffects()
    scheduler = Scheduler(
        {m: ModelRules() for m in models}, GroupPolicy([Group("(default)", tuple(models))]), effects
    )
    scheduler.process_changed("m0", ProcessState.READY, 0.0)
    started = time.perf_counter()
    for rid in range(count):
        scheduler.submit(Request(rid, "m0", 0.0), 0.0)
        scheduler.finish(rid, 0.0)
    elapsed = time.perf_counter() - started
    assert effects.grants == count
    return 2 * count / elapsed  # a submit and a finish are each a decision


def swapping_rate(count: int) -> float:
    models = [f"m{i}" for i in range(4)]
    effects = CountingEffects()
    scheduler = Scheduler(
        {m: ModelRules(limit=10**9) for m in models},
        GroupPolicy([Group("(default)", tuple(models))]),
        effects,
    )
    decisions = 0
    started = time.perf_counter()
    rid = 0
    for round_ in range(count // 4):
        target = models[round_ % 4]
        ids = []
        for _ in range(4):
            rid += 1
            ids.append(rid)
            scheduler.submit(Request(rid, target, 0.0), 0.0)
        swap = scheduler.active_swaps().get(target)
        if swap is not None:
            for evicted in swap.evict:
                scheduler.process_changed(evicted, ProcessState.STOPPED, 0.0)
            scheduler.process_changed(target, ProcessState.READY, 0.0)
            decisions += 1 + len(swap.evict)
        for request_id in ids:
            scheduler.finish(request_id, 0.0)
        decisions += 8
    return decisions / (time.perf_counter() - started)


def fsm_rate(count: int) -> float:
    """Bare generated-machine transitions per second (one start/ready/stop cycle is 5)."""
    machine = ProcessMachine(model=InertModel(ProcessMachine.fsm_spec))  # type: ignore[attr-defined]
    started = time.perf_counter()
    for _ in range(count // 5):
        for event in ("start", "spawned", "healthy", "stop", "exited"):
            machine.send(event)
    return count / (time.perf_counter() - started)


def core_rate(count: int) -> float:
    """Process-core messages per second, each a transition with its actions and reason."""
    core = ProcessCore("m")
    started = time.perf_counter()
    for _ in range(count // 5):
        core.handle(Start())
        generation = core.generation
        for message in (Spawned(generation, 1), Healthy(generation, 0.0), Stop(1.0)):
            core.handle(message)
        core.handle(Exited(generation, 0))
    return count / (time.perf_counter() - started)


async def lease_round_trips(total: int, clients: int) -> float:
    config = parse_config("models:\n  a: {cmd: 'fake --port ${PORT}', concurrencyLimit: 100}\n")
    router = RouterActor(config, launcher=GatedLauncher())
    async with anyio.create_task_group() as tg:
        await tg.start(router.run)
        await router.load("a")
        per_client = total // clients

        async def client() -> None:
            for _ in range(per_client):
                async with router.lease("a"):
                    pass

        started = time.perf_counter()
        async with anyio.create_task_group() as clients_group:
            for _ in range(clients):
                clients_group.start_soon(client)
        elapsed = time.perf_counter() - started
        await router.shutdown(1)
    return per_client * clients / elapsed


async def ping_pong_round_trips(total: int, clients: int) -> float:
    """Baseline: one server task answering requests over memory streams."""
    send, receive = anyio.create_memory_object_stream[object](1000)

    async def server() -> None:
        async for reply in receive:
            reply.send_nowait(None)  # type: ignore[attr-defined]

    per_client = total // clients

    async def client() -> None:
        for _ in range(per_client):
            reply_send, reply_receive = anyio.create_memory_object_stream[None](1)
            await send.send(reply_send)
            await reply_receive.receive()

    async with anyio.create_task_group() as tg:
        tg.start_soon(server)
        started = time.perf_counter()
        async with anyio.create_task_group() as clients_group:
            for _ in range(clients):
                clients_group.start_soon(client)
        elapsed = time.perf_counter() - started
        send.close()
    return per_client * clients / elapsed


def main(requests: int) -> dict[str, object]:
    fast = fast_path_rate(requests)
    swapping = swapping_rate(requests)
    fsm = fsm_rate(min(requests, 20000))
    core = core_rate(min(requests, 20000))
    leases = anyio.run(lease_round_trips, min(requests, 20000), 16)
    baseline = anyio.run(ping_pong_round_trips, min(requests, 20000), 16)
    print(f"pure scheduler, fast path:   {fast:>10,.0f} decisions/s (target >= 50,000)")
    print(f"pure scheduler, with swaps:  {swapping:>10,.0f} decisions/s")
    print(f"python-statemachine:         {fsm:>10,.0f} transitions/s = {1e6 / fsm:.0f} us each")
    print(f"process core (with actions): {core:>10,.0f} messages/s = {1e6 / core:.0f} us each")
    print(f"lease round trip via actor:  {leases:>10,.0f} /s = {1e6 / leases:.0f} us each")
    print(f"baseline memory ping-pong:   {baseline:>10,.0f} /s = {1e6 / baseline:.0f} us each")
    return {
        "fast_path_decisions_per_s": fast,
        "swapping_decisions_per_s": swapping,
        "fsm_transitions_per_s": fsm,
        "process_core_messages_per_s": core,
        "fast_path_vs_fsm": fast / fsm,
        "lease_round_trips_per_s": leases,
        "ping_pong_round_trips_per_s": baseline,
        "lease_vs_ping_pong": leases / baseline,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    save("scheduler", main(parser.parse_args().requests))
