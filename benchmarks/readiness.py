"""Swap readiness: from the upstream's first HTTP 200 to the waiting caller's answer.

For each of N cold starts, a client asks llamaswap for a model that is not loaded and
waits; the fake upstream prints the CLOCK_MONOTONIC instant of its first 200 on
/health. Reported: the delay from that instant to the client's answer, next to the
baseline of the same request sent directly to the ready upstream in the same run.
Target (process issue): p50 under 30 ms. llama-swap polls once a second after 250 ms.

    python benchmarks/readiness.py [--runs 20] [--startup-delay 0.2]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import aiohttp
import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))

from server import config_yaml, fake_model, running_server

from common import save, summary
from llamaswap.runtime.logs import LogRing

FIRST_200 = re.compile(r"first healthy response at monotonic=([0-9.]+)")


CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


async def first_200_after(log: LogRing, seen: int) -> float:
    """The instant the upstream reported for its first 200, from lines after `seen`."""
    with log.follow() as follow, anyio.fail_after(10):
        for line in log.lines()[seen:]:
            if match := FIRST_200.search(line):
                return float(match.group(1))
        async for event in follow:
            if match := FIRST_200.search(event.text):
                return float(match.group(1))
    raise RuntimeError("the upstream did not report its first 200")


async def timed_post(http: aiohttp.ClientSession, url: str) -> float:
    """When (monotonic) the whole answer had arrived."""
    async with http.post(url + "/v1/chat/completions", json=CHAT) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")
    return time.monotonic()


async def main(runs: int, startup_delay: float) -> dict[str, object]:
    yaml = config_yaml(fake_model("m", "--startup-delay", str(startup_delay)))
    async with running_server(yaml) as server, server.client() as http:
        router = server.service.router
        upstream = server.config.models["m"].proxy
        delays, direct = [], []
        for _ in range(runs):
            seen = len(router.model_logs["m"].lines())
            answered = await timed_post(http, server.url)
            first = await first_200_after(router.model_logs["m"], seen)
            delays.append((answered - first) * 1000)
            started = time.monotonic()
            direct.append((await timed_post(http, upstream) - started) * 1000)
            await router.unload(["m"])
    result = {
        "runs": runs,
        "first_200_to_answer_ms": summary(delays),
        "direct_request_ms": summary(direct),
        "added_ms_p50": summary(delays)["p50"] - summary(direct)["p50"],
    }
    p50, worst = summary(delays)["p50"], max(delays)
    print(f"first upstream 200 -> answer: p50 {p50:.1f} ms, max {worst:.1f} ms")
    print(f"baseline direct request:      p50 {summary(direct)['p50']:.1f} ms")
    print("target: p50 < 30 ms (llama-swap: up to ~1000 ms of polling)")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--startup-delay", type=float, default=0.2)
    options = parser.parse_args()
    save("readiness", anyio.run(main, options.runs, options.startup_delay))
