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

    python benchmarks/proxy.py [--requests 2000] [--sequential 400]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


async def measure(
    proxied: str, direct: str, pid: int, total: int, count: int, baseline: str, baseline_pid: int
) -> dict[str, object]:
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector, trust_env=False) as http:
        await wait_until_up(http, proxied)
        await post_once(http, proxied)  # loads the model
        await wait_until_up(http, baseline)
        for url in (direct, proxied, baseline):  # warm every path
            await sequential(http, url, 50)
        direct_latency = await sequential(http, direct, count)
        proxied_latency = await sequential(http, proxied, count)
        baseline_latency = await sequential(http, baseline, count)
        direct_rate = await concurrent(http, direct, total, 16)
        proxied_rate, cpu_per_request = await rate_and_cpu(http, proxied, pid, total)
        baseline_rate, baseline_cpu = await rate_and_cpu(http, baseline, baseline_pid, total)
        lags = await sse_lag(http, proxied, direct, 10)
    direct_ms = [x * 1000 for x in direct_latency]
    proxied_ms = [x * 1000 for x in proxied_latency]
    baseline_ms = [x * 1000 for x in baseline_latency]
    lag_ms = [x * 1000 for x in lags]
    direct_p50 = percentile(direct_ms, 0.5)
    cpu_ratio = cpu_per_request / baseline_cpu
    result = {
        "direct_latency_ms": summary(direct_ms),
        "proxied_latency_ms": summary(proxied_ms),
        "baseline_proxy_latency_ms": summary(baseline_ms),
        "added_p50_ms": percentile(proxied_ms, 0.5) - direct_p50,
        "baseline_added_p50_ms": percentile(baseline_ms, 0.5) - direct_p50,
        "direct_rps_c16": direct_rate,
        "proxied_rps_c16": proxied_rate,
        "baseline_proxy_rps_c16": baseline_rate,
        "throughput_ratio_c16": proxied_rate / direct_rate,
        "baseline_throughput_ratio_c16": baseline_rate / direct_rate,
        "proxy_cpu_us_per_request": cpu_per_request * 1e6,
        "baseline_proxy_cpu_us_per_request": baseline_cpu * 1e6,
        "cpu_vs_baseline_proxy": cpu_ratio,
        "cpu_us_scaled_to_reference": cpu_ratio * REFERENCE_BASELINE_CPU_US,
        "sse_chunk_lag_ms": summary(lag_ms),
    }
    print(
        f"added p50 latency at c=1:   {result['added_p50_ms']:.2f} ms "
        f"(minimal proxy: {result['baseline_added_p50_ms']:.2f} ms; target < 1 ms)"
    )
    print(
        f"throughput at c=16:         {proxied_rate:,.0f} / {direct_rate:,.0f} req/s = "
        f"{proxied_rate / direct_rate:.2f} of direct "
        f"(minimal proxy: {baseline_rate / direct_rate:.2f}; target >= 0.45)"
    )
    print(
        f"llamaswap CPU per request:  {cpu_per_request * 1e6:.0f} us = {cpu_ratio:.2f}x the "
        f"minimal proxy ({baseline_cpu * 1e6:.0f} us); scaled to the reference machine "
        f"{cpu_ratio * REFERENCE_BASELINE_CPU_US:.0f} us (target <= 150 us)"
    )
    print(
        f"SSE chunk lag:              p50 {percentile(lag_ms, 0.5):.2f} ms, "
        f"max {max(lag_ms):.2f} ms (target < 5 ms)"
    )
    return result


def main(total: int, count: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as workdir:
        process, proxied, direct = start_llamaswap(Path(workdir))
        baseline, baseline_url = start_baseline(direct)
        try:
            return anyio.run(
                measure, proxied, direct, process.pid, total, count, baseline_url, baseline.pid
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
    options = parser.parse_args()
    save("proxy", main(options.requests, options.sequential))
