"""10,000 requests across 5 models, 32 at a time, with clients that give up at random
points (before an answer, while their model loads, mid-stream), upstreams killed with
SIGKILL and models unloaded under load. Every request ends exactly once (the client's
record and llamaswap's access log agree), nothing is left queued, in flight or leased,
and a second identical round leaves llamaswap's RSS where the first left it.

Slow (about a minute and a half): runs only with LLAMASWAP_SLOW=1 (`make e2e`).
"""

from __future__ import annotations

import os

import pytest

from ..integration.http_helpers import CHAT, chat
from ..integration.server import config_yaml, fake_model, running_server
from .conftest import (
    CANCELLED,
    MB,
    SLOW,
    SLOW_REASON,
    Traffic,
    TrafficPlan,
    access_ledger,
    check_traffic,
    router_idle,
    settle,
    settled_rss,
)

if not SLOW:
    pytest.skip(SLOW_REASON, allow_module_level=True)

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

MODELS = [f"m{i}" for i in range(5)]
REQUESTS = int(os.environ.get("LLAMASWAP_LOAD_REQUESTS", "10000"))
SEED = int(os.environ.get("LLAMASWAP_SEED", "20240611"))
RSS_GROWTH_LIMIT = 20 * MB


@pytest.mark.timeout(900)
async def test_ten_thousand_requests_end_exactly_once_and_leave_nothing_behind() -> None:
    yaml = config_yaml(
        *(
            fake_model(m, "--chunks", "8", "--chunk-gap", "0.002", extra="concurrencyLimit: 16")
            for m in MODELS
        ),
        top=f"""
        logToStdout: none
        groups:
          all:
            swap: false
            members: [{", ".join(MODELS)}]
        """,
    )
    async with running_server(yaml) as server, server.client() as http:
        router = server.service.router
        rss_after: list[int] = []
        first_rid = 1
        for round_number in (1, 2):
            plan = TrafficPlan(
                models=MODELS,
                count=REQUESTS,
                concurrency=32,
                stream_share=0.5,
                cancel_share=0.1,
                crashes=5,
                unloads=5,
                seed=SEED,  # the same seed: the second round is identical in shape
            )
            with access_ledger() as ledger:
                result = await Traffic(server, http, plan, first_rid).run()
                await settle(server, ledger, result)
                print(f"round {round_number}: {result.summary()}")
                check_traffic(result, ledger, plan)
            first_rid += REQUESTS
            # clients gave up at every point the plan aims at
            assert result.kinds[CANCELLED] >= 0.03 * REQUESTS, result.summary()
            assert result.phases["mid-stream"] > 0, result.summary()
            assert result.phases["before-answer"] + result.phases["while-loading"] > 0
            assert result.crashes == 5 and result.unloads == 5
            # nothing stuck: no queue, nothing in flight, every lease and ticket released
            snapshot = router.snapshot
            assert (snapshot.queued, snapshot.in_flight) == ({}, {})
            assert router._leases == {} and router._tickets == {}
            assert router_idle(server)
            # every model still answers
            for model in MODELS:
                async with http.post(server.url + CHAT, json=chat(model)) as response:
                    assert response.status == 200, await response.text()
            del result, ledger
            rss_after.append(settled_rss())
            print(f"round {round_number}: llamaswap RSS {rss_after[-1] / MB:.1f} MB")
        growth = rss_after[1] - rss_after[0]
        assert growth <= RSS_GROWTH_LIMIT, (
            f"RSS grew {growth / MB:.1f} MB in the second round "
            f"({rss_after[0] / MB:.1f} -> {rss_after[1] / MB:.1f} MB)"
        )
