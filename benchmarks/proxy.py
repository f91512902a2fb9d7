"""Proxy overhead: the same upstream, direct, through a minimal proxy, and through llamaswap.

llamaswap runs as its own process (`llamaswap run`) in front of one fake upstream; the
baseline is `baseline_proxy.py`, the smallest aiohttp proxy, in front of the same
upstream; this script is the client. Measured (targets from the HTTP issue):
- added p50 latency at concurrency 1 (target < 1 ms),
- throughput ratio proxied/direct at concurrency 16 (target >= 0.45),
- llamaswap CPU time per proxied request (target <= 150 us),
- SSE chunk lag: when each streamed chunk arrives, proxied minus direct (target < 5 ms).

The targets were set on a machine where the minimal proxy itself costs ~150 us of CPU
per request; CPU figures are therefore also reported relative to the baseline proxy
measured in the same run, and scaled to that reference machine.

    python benchmarks/proxy.py [--requests 2000] [--sequential 400] [--rounds 5]
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
REFERENCE_BASELINE_CPU_US = 152.0  # the minimal proxy on the machine the targets came from
CHUNKS, GAP = 20, 0.02


def start_llamaswap(workdir: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    upstream_port, listen_port = free_port_block(2), free_port_block(1)
    cmd = " ".join(
        upstream_command(
            "${PORT}", "--silent", "--model", "m", "--chunks", str(CHUNKS), "--chunk-gap", str(GAP)
        )
    )
    config = workdir / "bench.yaml"
    config.write_text(
        f"startPort: {upstream_port}\nlogToStdout: none\nmodels:\n  m:\n"
        f"    cmd: {cmd}\n    proxy: http://127.0.0.1:${{PORT}}\n    concurrencyLimit: 64\n"
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


async def post_once(http: aiohttp.ClientSession, url: str) -> float:
    started = time.perf_counter()
    async with http.post(url + "/v1/chat/completions", json=CHAT) as response:
        await response.read()
        assert response.status == 200, response.status
    return time.perf_counter() - started


async def sequential(http: aiohttp.ClientSession, url: str, count: int) -> list[float]:
    return [await post_once(http, url) for _ in range(count)]


async def concurrent(http: aiohttp.ClientSession, url: str, total: int, workers: int) -> float:
    per_worker = total // workers

    async def worker() -> None:
        for _ in range(per_worker):
            await post_once(http, url)

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(workers):
            tg.start_soon(worker)
    return per_worker * workers / (time.perf_counter() - started)


async def chunk_times(http: aiohttp.ClientSession, url: str) -> list[float]:
    """Arrival time of each SSE chunk after the request was sent."""
    started = time.perf_counter()
    times: list[float] = []
    async with http.post(url + "/v1/chat/completions", json={**CHAT, "stream": True}) as response:
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


async def rate_and_cpu(
    http: aiohttp.ClientSession, url: str, pid: int, total: int
) -> tuple[float, float]:
    """(requests per second at c=16, CPU seconds per request of process `pid`)."""
    before = process_cpu_seconds(pid)
    rate = await concurrent(http, url, total, 16)
    return rate, (process_cpu_seconds(pid) - before) / total


async def one_round(
    http: aiohttp.ClientSession, urls: dict[str, str], pids: dict[str, int], total: int, count: int
) -> dict[str, float]:
    """Latency at c=1, then rate and CPU at c=16, for every path, one after the other."""
    latency = {name: await sequential(http, url, count) for name, url in urls.items()}
    p50 = {name: percentile(values, 0.5) * 1000 for name, values in latency.items()}
    rate = {"direct": await concurrent(http, urls["direct"], total, 16)}
    cpu: dict[str, float] = {}
    for name in ("llamaswap", "baseline"):
        rate[name], cpu[name] = await rate_and_cpu(http, urls[name], pids[name], total)
    return {
        "direct_p50_ms": p50["direct"],
        "added_p50_ms": p50["llamaswap"] - p50["direct"],
        "baseline_added_p50_ms": p50["baseline"] - p50["direct"],
        "direct_rps_c16": rate["direct"],
        "proxied_rps_c16": rate["llamaswap"],
        "baseline_proxy_rps_c16": rate["baseline"],
        "throughput_ratio_c16": rate["llamaswap"] / rate["direct"],
        "baseline_throughput_ratio_c16": rate["baseline"] / rate["direct"],
        "proxy_cpu_us_per_request": cpu["llamaswap"] * 1e6,
        "baseline_proxy_cpu_us_per_request": cpu["baseline"] * 1e6,
        "cpu_vs_baseline_proxy": cpu["llamaswap"] / cpu["baseline"],
    }


async def measure(
    proxied: str,
    direct: str,
    pid: int,
    total: int,
    count: int,
    baseline: str,
    baseline_pid: int,
    rounds: int,
) -> dict[str, object]:
    """`rounds` interleaved rounds; each figure is the median over the rounds."""
    urls = {"direct": direct, "llamaswap": proxied, "baseline": baseline}
    pids = {"llamaswap": pid, "baseline": baseline_pid}
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector, trust_env=False) as http:
        await wait_until_up(http, proxied)
        await post_once(http, proxied)  # loads the model
        await wait_until_up(http, baseline)
        for url in urls.values():  # warm every path
            await sequential(http, url, 50)
        per_round = [await one_round(http, urls, pids, total, count) for _ in range(rounds)]
        lags = await sse_lag(http, proxied, direct, 10)
        baseline_lags = await sse_lag(http, baseline, direct, 10)
    result: dict[str, object] = {
        key: statistics.median(r[key] for r in per_round) for key in per_round[0]
    }
    result["rounds"] = per_round
    result["cpu_us_scaled_to_reference"] = (
        float(result["cpu_vs_baseline_proxy"]) * REFERENCE_BASELINE_CPU_US  # type: ignore[arg-type]
    )
    lag_ms = [x * 1000 for x in lags]
    result["sse_chunk_lag_ms"] = summary(lag_ms)
    result["baseline_sse_chunk_lag_ms"] = summary([x * 1000 for x in baseline_lags])
    report(result, lag_ms, rounds)
    return result


def report(result: dict[str, Any], lag_ms: list[float], rounds: int) -> None:
    print(f"median of {rounds} interleaved rounds:")
    print(
        f"added p50 latency at c=1:   {result['added_p50_ms']:.2f} ms "
        f"(minimal proxy: {result['baseline_added_p50_ms']:.2f} ms; target < 1 ms)"
    )
    print(
        f"throughput at c=16:         {result['proxied_rps_c16']:,.0f} / "
        f"{result['direct_rps_c16']:,.0f} req/s = {result['throughput_ratio_c16']:.2f} of direct "
        f"(minimal proxy: {result['baseline_throughput_ratio_c16']:.2f}; target >= 0.45)"
    )
    print(
        f"llamaswap CPU per request:  {result['proxy_cpu_us_per_request']:.0f} us = "
        f"{result['cpu_vs_baseline_proxy']:.2f}x the minimal proxy "
        f"({result['baseline_proxy_cpu_us_per_request']:.0f} us); scaled to the reference "
        f"machine {result['cpu_us_scaled_to_reference']:.0f} us (target <= 150 us)"
    )
    print(
        f"SSE chunk lag:              p50 {percentile(lag_ms, 0.5):.2f} ms, "
        f"max {max(lag_ms):.2f} ms (minimal proxy: p50 "
        f"{result['baseline_sse_chunk_lag_ms']['p50']:.2f} ms, max "
        f"{result['baseline_sse_chunk_lag_ms']['max']:.2f} ms; target < 5 ms)"
    )


def main(total: int, count: int, rounds: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as workdir:
        process, proxied, direct = start_llamaswap(Path(workdir))
        baseline, baseline_url = start_baseline(direct)
        try:
            return anyio.run(
                measure,
                proxied,
                direct,
                process.pid,
                total,
                count,
                baseline_url,
                baseline.pid,
                rounds,
            )
        finally:
            for child in (baseline, process):
                os.killpg(child.pid, signal.SIGTERM)
                try:
                    child.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(child.pid, signal.SIGKILL)
                    child.wait(5)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per concurrency run")
    parser.add_argument("--sequential", type=int, default=400, help="requests at c=1, each path")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median)")
    options = parser.parse_args()
    save("proxy", main(options.requests, options.sequential, options.rounds))
