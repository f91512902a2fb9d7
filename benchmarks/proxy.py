"""Proxy overhead: the same upstream, direct, through a minimal proxy, and through llamaswap.

llamaswap runs as its own process (`llamaswap run`, uvloop) in front of one fake
upstream; the baseline is `baseline_proxy.py`, the smallest aiohttp proxy, on uvloop
too, in front of the same upstream; this script is the client. Each round measures
every path one after the other (the order rotates from round to round), and each
figure is the median over the rounds, so every ratio compares numbers taken minutes
apart at most on a shared machine. Measured (targets from issue 16):

- added p50 latency at concurrency 1 (<= the minimal proxy's + 0.1 ms),
- throughput proxied/direct at concurrency 16, small JSON (>= the minimal proxy's),
- llamaswap CPU per proxied request (<= 1.0x the minimal proxy's),
- throughput proxied/direct at concurrency 16 with an upstream taking 40 ms (>= 0.97),
  and the p50 latency it adds,
- 128 concurrent streams: SSE events per second proxied/direct (>= 0.95),
- SSE chunk lag: when each streamed chunk arrives, proxied minus direct.

    python benchmarks/proxy.py [--requests 2000] [--sequential 400] [--rounds 5]
                               [--only latency,rate,slow,streams,sse]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))

from server import free_port_block

from common import percentile, process_cpu_seconds, save, summary
from llamaswap.testing import upstream_command

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
SLOW_CHAT = {**CHAT, "wait": "40ms"}  # the fake upstream answers after 40 ms
STREAM_CHAT = {**CHAT, "stream": True}
CHUNKS, GAP = 20, 0.02
STREAMS = 128
SECTIONS = ("latency", "rate", "slow", "streams", "sse")
PATHS = ("direct", "llamaswap", "baseline")


def start_llamaswap(workdir: Path, extra: str = "") -> tuple[subprocess.Popen[bytes], str, str]:
    upstream_port, listen_port = free_port_block(2), free_port_block(1)
    cmd = " ".join(
        upstream_command(
            "${PORT}", "--silent", "--model", "m", "--chunks", str(CHUNKS), "--chunk-gap", str(GAP)
        )
    )
    config = workdir / "bench.yaml"
    config.write_text(
        f"startPort: {upstream_port}\nlogToStdout: none\nmodels:\n  m:\n"
        f"    cmd: {cmd}\n    proxy: http://127.0.0.1:${{PORT}}\n    concurrencyLimit: 512\n"
        + "".join(f"{line}\n" for line in extra.split(";") if line.strip())
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llamaswap",
            "run",
            "--config",
            str(config),
            "--listen",
            f"127.0.0.1:{listen_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return process, f"http://127.0.0.1:{listen_port}", f"http://127.0.0.1:{upstream_port}"


def start_baseline(upstream: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port_block(1)
    script = Path(__file__).resolve().parent / "baseline_proxy.py"
    process = subprocess.Popen(
        [sys.executable, str(script), str(port), upstream],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return process, f"http://127.0.0.1:{port}"


async def wait_until_up(http: aiohttp.ClientSession, url: str) -> None:
    with anyio.fail_after(30):
        while True:
            try:
                async with http.get(url + "/health") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await anyio.sleep(0.05)  # a separate process: there is no event to await


async def post_once(http: aiohttp.ClientSession, url: str, payload: dict[str, Any] = CHAT) -> float:
    started = time.perf_counter()
    async with http.post(url + "/v1/chat/completions", json=payload) as response:
        await response.read()
        assert response.status == 200, response.status
    return time.perf_counter() - started


async def sequential(http: aiohttp.ClientSession, url: str, count: int) -> list[float]:
    return [await post_once(http, url) for _ in range(count)]


async def concurrent(
    http: aiohttp.ClientSession,
    url: str,
    total: int,
    workers: int,
    payload: dict[str, Any] = CHAT,
) -> tuple[float, list[float]]:
    """(requests per second, each request's latency) with `workers` clients."""
    per_worker = total // workers
    latencies: list[float] = []

    async def worker() -> None:
        for _ in range(per_worker):
            latencies.append(await post_once(http, url, payload))

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(workers):
            tg.start_soon(worker)
    return per_worker * workers / (time.perf_counter() - started), latencies


async def stream_events(http: aiohttp.ClientSession, url: str) -> int:
    """One streamed chat answer; the number of SSE events in it (blank-line separated)."""
    body = bytearray()
    async with http.post(url + "/v1/chat/completions", json=STREAM_CHAT) as response:
        assert response.status == 200, response.status
        async for chunk in response.content.iter_any():
            body += chunk
    return body.count(b"\n\n")


async def stream_rate(http: aiohttp.ClientSession, url: str, streams: int, each: int) -> float:
    """SSE events per second with `streams` streams open at once, `each` in a row."""
    events = 0

    async def worker() -> None:
        nonlocal events
        for _ in range(each):
            received = await stream_events(http, url)  # awaited first: `+=` would race
            events += received

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(streams):
            tg.start_soon(worker)
    return events / (time.perf_counter() - started)


async def chunk_times(http: aiohttp.ClientSession, url: str) -> list[float]:
    """Arrival time of each SSE chunk after the request was sent."""
    started = time.perf_counter()
    times: list[float] = []
    async with http.post(url + "/v1/chat/completions", json=STREAM_CHAT) as response:
        async for _ in response.content.iter_any():
            times.append(time.perf_counter() - started)
    return times


async def sse_lag(
    http: aiohttp.ClientSession, proxied: str, direct: str, rounds: int
) -> list[float]:
    lags: list[float] = []
    for _ in range(rounds):
        through = await chunk_times(http, proxied)
        straight = await chunk_times(http, direct)
        for a, b in zip(through, straight, strict=False):
            lags.append(a - b)
    return lags


async def per_path(order: tuple[str, ...], run: Callable[[str], Awaitable[Any]]) -> dict[str, Any]:
    return {name: await run(name) for name in order}


async def one_round(
    http: aiohttp.ClientSession,
    wide: aiohttp.ClientSession,
    urls: dict[str, str],
    pids: dict[str, int],
    options: argparse.Namespace,
    order: tuple[str, ...],
) -> dict[str, float]:
    """Every chosen section, each path in `order` one after the other."""
    out: dict[str, float] = {}
    if "latency" in options.only:
        latency = await per_path(order, lambda n: sequential(http, urls[n], options.sequential))
        p50 = {name: percentile(values, 0.5) * 1000 for name, values in latency.items()}
        out["direct_p50_ms"] = p50["direct"]
        out["added_p50_ms"] = p50["llamaswap"] - p50["direct"]
        out["baseline_added_p50_ms"] = p50["baseline"] - p50["direct"]
    if "rate" in options.only:

        async def rate_and_cpu(name: str) -> tuple[float, float]:
            pid = pids.get(name)
            before = process_cpu_seconds(pid) if pid else 0.0
            rate, _ = await concurrent(http, urls[name], options.requests, 16)
            cpu = (process_cpu_seconds(pid) - before) / options.requests if pid else 0.0
            return rate, cpu

        measured = await per_path(order, rate_and_cpu)
        rate = {name: r for name, (r, _) in measured.items()}
        out["direct_rps_c16"] = rate["direct"]
        out["proxied_rps_c16"] = rate["llamaswap"]
        out["baseline_proxy_rps_c16"] = rate["baseline"]
        out["throughput_ratio_c16"] = rate["llamaswap"] / rate["direct"]
        out["baseline_throughput_ratio_c16"] = rate["baseline"] / rate["direct"]
        out["proxy_cpu_us_per_request"] = measured["llamaswap"][1] * 1e6
        out["baseline_proxy_cpu_us_per_request"] = measured["baseline"][1] * 1e6
        out["cpu_vs_baseline_proxy"] = measured["llamaswap"][1] / measured["baseline"][1]
    if "slow" in options.only:
        slow = await per_path(
            order, lambda n: concurrent(http, urls[n], options.slow_requests, 16, SLOW_CHAT)
        )
        p50 = {name: percentile(lat, 0.5) * 1000 for name, (_, lat) in slow.items()}
        out["slow_direct_rps_c16"] = slow["direct"][0]
        out["slow_throughput_ratio_c16"] = slow["llamaswap"][0] / slow["direct"][0]
        out["slow_baseline_throughput_ratio_c16"] = slow["baseline"][0] / slow["direct"][0]
        out["slow_direct_p50_ms"] = p50["direct"]
        out["slow_added_p50_ms"] = p50["llamaswap"] - p50["direct"]
        out["slow_baseline_added_p50_ms"] = p50["baseline"] - p50["direct"]
    if "streams" in options.only:
        rates = await per_path(order, lambda n: stream_rate(wide, urls[n], STREAMS, 2))
        out["streams_direct_events_per_s"] = rates["direct"]
        out["streams_ratio"] = rates["llamaswap"] / rates["direct"]
        out["streams_baseline_ratio"] = rates["baseline"] / rates["direct"]
    return out


async def measure(
    urls: dict[str, str], pids: dict[str, int], options: argparse.Namespace
) -> dict[str, object]:
    """`rounds` interleaved rounds; each figure is the median over the rounds."""
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64), trust_env=False) as http,
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=2 * STREAMS), trust_env=False
        ) as wide,
    ):
        await wait_until_up(http, urls["llamaswap"])
        await post_once(http, urls["llamaswap"])  # loads the model
        await wait_until_up(http, urls["baseline"])
        for url in urls.values():  # warm every path, its connection pools included
            await sequential(http, url, 50)
            await concurrent(http, url, 320, 16)
            if "streams" in options.only:
                await stream_rate(wide, url, STREAMS, 1)
        per_round = []
        for index in range(options.rounds):
            order = PATHS[index % 3 :] + PATHS[: index % 3]
            per_round.append(await one_round(http, wide, urls, pids, options, order))
        lags: list[float] = []
        baseline_lags: list[float] = []
        if "sse" in options.only:
            lags = await sse_lag(http, urls["llamaswap"], urls["direct"], 10)
            baseline_lags = await sse_lag(http, urls["baseline"], urls["direct"], 10)
    result: dict[str, Any] = {
        key: statistics.median(r[key] for r in per_round) for key in per_round[0]
    }
    result["rounds"] = per_round
    result["event_loop"] = "uvloop (llamaswap and the minimal proxy)"
    if lags:
        result["sse_chunk_lag_ms"] = summary([x * 1000 for x in lags])
        result["baseline_sse_chunk_lag_ms"] = summary([x * 1000 for x in baseline_lags])
    report(result, options.rounds)
    return result


def report(r: dict[str, Any], rounds: int) -> None:
    print(f"median of {rounds} interleaved rounds (minimal proxy in brackets):")
    if "added_p50_ms" in r:
        print(
            f"added p50 latency at c=1:     {r['added_p50_ms']:.3f} ms "
            f"({r['baseline_added_p50_ms']:.3f} ms; target <= +0.1 ms)"
        )
    if "throughput_ratio_c16" in r:
        print(
            f"throughput at c=16 vs direct: {r['throughput_ratio_c16']:.3f} "
            f"({r['baseline_throughput_ratio_c16']:.3f}; direct "
            f"{r['direct_rps_c16']:,.0f} req/s; target >= the minimal proxy's)"
        )
        print(
            f"CPU per request:              {r['proxy_cpu_us_per_request']:.0f} us = "
            f"{r['cpu_vs_baseline_proxy']:.2f}x ({r['baseline_proxy_cpu_us_per_request']:.0f} us;"
            " target <= 1.0x)"
        )
    if "slow_throughput_ratio_c16" in r:
        print(
            f"40 ms upstream, c=16:         {r['slow_throughput_ratio_c16']:.3f} of direct, "
            f"p50 +{r['slow_added_p50_ms']:.2f} ms ({r['slow_baseline_throughput_ratio_c16']:.3f},"
            f" p50 +{r['slow_baseline_added_p50_ms']:.2f} ms; target >= 0.97)"
        )
    if "streams_ratio" in r:
        print(
            f"{STREAMS} streams, events/s:      {r['streams_ratio']:.3f} of direct "
            f"({r['streams_baseline_ratio']:.3f}; direct "
            f"{r['streams_direct_events_per_s']:,.0f}/s; target >= 0.95)"
        )
    if "sse_chunk_lag_ms" in r:
        lag, base = r["sse_chunk_lag_ms"], r["baseline_sse_chunk_lag_ms"]
        print(
            f"SSE chunk lag:                p50 {lag['p50']:.2f} ms, max {lag['max']:.2f} ms "
            f"(p50 {base['p50']:.2f} ms, max {base['max']:.2f} ms)"
        )


def main(options: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as workdir:
        process, proxied, direct = start_llamaswap(Path(workdir), options.config)
        baseline, baseline_url = start_baseline(direct)
        urls = {"direct": direct, "llamaswap": proxied, "baseline": baseline_url}
        pids = {"llamaswap": process.pid, "baseline": baseline.pid}
        try:
            return anyio.run(measure, urls, pids, options)
        finally:
            for child in (baseline, process):
                os.killpg(child.pid, signal.SIGTERM)
                try:
                    child.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(child.pid, signal.SIGKILL)
                    child.wait(5)


def sections(text: str) -> tuple[str, ...]:
    chosen = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown sections: {', '.join(sorted(unknown))}")
    return chosen


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="small requests at c=16")
    parser.add_argument("--sequential", type=int, default=400, help="requests at c=1, each path")
    parser.add_argument("--slow-requests", type=int, default=480, help="40 ms requests at c=16")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median)")
    parser.add_argument(
        "--config",
        default="",
        help="top-level config lines for llamaswap, ';' between them (e.g. 'captureBuffer: 0')",
    )
    parser.add_argument(
        "--only", type=sections, default=SECTIONS, help=f"sections: {','.join(SECTIONS)}"
    )
    options = parser.parse_args()
    save("proxy", main(options))
