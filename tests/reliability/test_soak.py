"""A bounded soak: a few minutes of mixed traffic that keeps swapping between 4 models
(two that run together, two that swap with everything), with clients that give up and
upstreams that crash. llamaswap's open file descriptors and RSS after it are compared
with a baseline taken after a warm-up round, both measured with every model unloaded
and no client connected.

Slow (about 3 minutes; LLAMASWAP_SOAK_SECONDS changes it): runs only with
LLAMASWAP_SLOW=1 (`make e2e`).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable

import anyio
import pytest

from llamaswap.runtime.events import SwapStarted

from ..integration.server import RunningServer, config_yaml, fake_model, running_server
from .conftest import (
    MB,
    SLOW,
    SLOW_REASON,
    Traffic,
    TrafficPlan,
    access_ledger,
    check_traffic,
    open_fds,
    router_idle,
    settle,
    settled_rss,
    wait_until,
)

if not SLOW:
    pytest.skip(SLOW_REASON, allow_module_level=True)

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

MODELS = ["a", "b", "c", "d"]
TOTAL_SECONDS = float(os.environ.get("LLAMASWAP_SOAK_SECONDS", "180"))
WARM_UP_SECONDS = max(10.0, TOTAL_SECONDS / 6)
PHASE_SECONDS = 3.0
FD_GROWTH_LIMIT = 5
RSS_GROWTH_LIMIT = 25 * MB


def swapping_picker(models: list[str]) -> Callable[[random.Random, float], str]:
    """Each 3 s phase has a hot model that gets 85% of the requests; the rest go to any
    model, so the router keeps swapping, joining and queueing."""

    def pick(rng: random.Random, elapsed: float) -> str:
        hot = models[int(elapsed // PHASE_SECONDS) % len(models)]
        return hot if rng.random() < 0.85 else rng.choice(models)

    return pick


async def quiesce(server: RunningServer) -> None:
    """Unload everything and wait until no request, lease or upstream is left."""
    await server.service.router.unload()
    await wait_until(server, lambda: router_idle(server), within=30)
    router = server.service.router
    assert all(router.model_state(m) == "stopped" for m in MODELS)


async def stable_fds(within: float = 5.0) -> int:
    """The fd count once it stops moving (sockets the peers closed are released as their
    EOFs are processed; there is no event for that, so poll /proc, bounded)."""
    last, same, deadline = open_fds(), 0, time.monotonic() + within
    while same < 10 and time.monotonic() < deadline:
        await anyio.sleep(0.05)
        current = open_fds()
        same = same + 1 if current == last else 0
        last = current
    return last


async def soak_round(server: RunningServer, seconds: float, seed: int, first_rid: int) -> int:
    """Mixed traffic for `seconds` with a fresh client that is closed afterwards."""
    plan = TrafficPlan(
        models=MODELS,
        seconds=seconds,
        concurrency=8,
        stream_share=0.5,
        cancel_share=0.1,
        crashes=max(1, int(seconds // 40)),
        pick=swapping_picker(MODELS),
        seed=seed,
    )
    async with server.client() as http:
        with access_ledger() as ledger:
            result = await Traffic(server, http, plan, first_rid).run()
            await settle(server, ledger, result)
            print(f"soak ({seconds:.0f}s): {result.summary()}")
            check_traffic(result, ledger, plan)
    assert result.outcomes
    return first_rid + len(result.outcomes)


@pytest.mark.timeout(TOTAL_SECONDS * 3 + 120)
async def test_soak_of_swapping_traffic_leaks_no_fds_and_no_memory() -> None:
    yaml = config_yaml(
        *(fake_model(m, "--chunks", "6", "--chunk-gap", "0.01") for m in MODELS),
        top="""
        logToStdout: none
        groups:
          duo:
            swap: false
            members: [a, b]
          solo:
            swap: true
            members: [c, d]
        """,
    )
    async with running_server(yaml) as server:
        started = time.monotonic()
        swaps = 0

        def count_swaps(event: object) -> None:
            nonlocal swaps
            if isinstance(event, SwapStarted):
                swaps += 1

        server.service.bus.add_listener(count_swaps)
        rid = await soak_round(server, WARM_UP_SECONDS, seed=1, first_rid=1)
        await quiesce(server)
        fds_before, rss_before = await stable_fds(), settled_rss()
        warm_swaps = swaps

        rid = await soak_round(server, TOTAL_SECONDS - WARM_UP_SECONDS, seed=2, first_rid=rid)
        await quiesce(server)
        server.service.bus.remove_listener(count_swaps)
        fds_after, rss_after = await stable_fds(), settled_rss()
        print(
            f"soak: {rid - 1} requests, {swaps} swaps ({swaps - warm_swaps} "
            f"after the warm-up) in {time.monotonic() - started:.0f}s; "
            f"fds {fds_before} -> {fds_after}; "
            f"RSS {rss_before / MB:.1f} -> {rss_after / MB:.1f} MB"
        )
        assert swaps - warm_swaps >= 10, "the soak did not swap"
        assert fds_after <= fds_before + FD_GROWTH_LIMIT, (fds_before, fds_after)
        assert rss_after <= rss_before + RSS_GROWTH_LIMIT, (rss_before / MB, rss_after / MB)
