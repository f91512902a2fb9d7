"""`llamaswap simulate` and the live router agree on the swaps a trace causes.

The same config and trace go to the simulator (virtual clock) and to a real server
with fake upstreams whose load time matches the simulator's; both count the swaps
the scheduler starts.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from llamaswap.config import parse_config
from llamaswap.policytools import TraceRequest, simulate
from llamaswap.runtime.events import SwapStarted

from .server import config_yaml, fake_model, running_server

pytestmark = pytest.mark.anyio

LOAD_SECONDS = 0.8  # interpreter start-up (~0.5 s) plus --startup-delay 0.3


async def replay_live(yaml: str, trace: list[TraceRequest]) -> int:
    swaps: list[Any] = []
    async with running_server(yaml) as server, server.client() as http:
        server.service.bus.add_listener(
            lambda event: swaps.append(event) if isinstance(event, SwapStarted) else None
        )

        async def send(request: TraceRequest, start: float) -> None:
            await anyio.sleep_until(start + request.t)  # the trace's arrival time
            body = {
                "model": request.model,
                "messages": [{"role": "user", "content": "hi"}],
                "wait": request.duration,
            }
            async with http.post(server.url + "/v1/chat/completions", json=body) as response:
                assert response.status == 200
                await response.read()

        start = time.monotonic()
        async with anyio.create_task_group() as tg:
            for request in trace:
                tg.start_soon(send, request, start)
    return len(swaps)


@pytest.mark.parametrize(
    ("trace", "expected"),
    [
        # interleaved arrivals during the first load: collated into one swap per model
        ([TraceRequest(0.05 * i, m, 0.2) for i, m in enumerate("abcabc")], 3),
        # well-spaced arrivals: every change of model is a swap
        (
            [TraceRequest(0.0, "a", 0.1), TraceRequest(2.5, "b", 0.1), TraceRequest(5.0, "a", 0.1)],
            3,
        ),
    ],
    ids=["collated", "spaced"],
)
async def test_simulation_and_live_router_count_the_same_swaps(
    trace: list[TraceRequest], expected: int
) -> None:
    models = [fake_model(m, "--startup-delay", "0.3") for m in "abc"]
    yaml = config_yaml(*models)
    simulated = simulate(parse_config(yaml), trace, load_seconds=LOAD_SECONDS, stop_seconds=0.05)
    live = await replay_live(yaml, trace)
    assert simulated.swaps == live == expected
