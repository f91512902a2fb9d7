"""Swap readiness against a real llama-server: what llamaswap adds to a cold start.

llama-server prints nothing at the instant its /health turns 200, so each cold start
is timed twice in the same run, both from the spawn (the process actor's `starting`
transition, right before the fork):

(a) spawn -> the client's answer through llamaswap (the request is what started it);
(b) spawn -> the first /health 200 seen by a separate poller process that probes
    llama-server's port directly every 2 ms (CLOCK_MONOTONIC is system-wide);
(c) afterwards, the same request sent directly to the ready llama-server.

a - b is llamaswap's added readiness latency (it includes answering the request);
a - b - c subtracts the request's own time. Also reported: spawn -> llamaswap marks
the model ready (r), r - b (how late llamaswap's health probe noticed) and a - r.
llamaswap runs in this process on 127.0.0.1; the model is a tiny llama-server model
with --threads 1. A warm-up cold start is not counted.

    python benchmarks/real_readiness.py [--runs 20] [--interval-ms 2]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import anyio

HERE = Path(__file__).resolve().parent
for _path in (HERE, HERE.parent):  # common.py; the repo root for tests.*
    if str(_path) not in sys.path:
        sys.path.append(str(_path))

from tests.e2e import kit  # noqa: E402
from tests.e2e.conftest import LlamaModel, llamaswap_yaml  # noqa: E402
from tests.integration.server import running_server  # noqa: E402

from common import save, summary  # noqa: E402
from llamaswap.runtime.events import ProcessStateChanged  # noqa: E402

# Reads one line per cold start from stdin, answers "polling", then probes /health
# every `interval` seconds until the first 200 and prints when it arrived.
POLLER = r"""
import socket, sys, time
port, interval = int(sys.argv[1]), float(sys.argv[2])
request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
for command in sys.stdin:
    if command.strip() != "go":
        break
    print("polling", flush=True)
    probes, next_at, give_up = 0, time.monotonic(), time.monotonic() + 60
    while time.monotonic() < give_up:
        probes += 1
        head = b""
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(request)
                while len(head) < 12:
                    more = sock.recv(64)
                    if not more:
                        break
                    head += more
        except OSError:
            pass
        if head.startswith(b"HTTP/1.1 200"):
            print(f"first200 {time.monotonic():.6f} {probes}", flush=True)
            break
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    else:
        print("timeout", flush=True)
"""

MODEL = "cold"


@dataclass
class ColdStart:
    spawn_to_answer: float  # (a), seconds
    spawn_to_first_200: float  # (b)
    spawn_to_ready: float  # (r)
    direct_request: float  # (c)
    probes: int  # the poller's probes until the first 200

    @property
    def added(self) -> float:
        return self.spawn_to_answer - self.spawn_to_first_200


def chat_body(index: int) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"cold start number {index}"}],
        "max_tokens": 1,
        "cache_prompt": False,
    }


async def _post(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> float:
    """POST and read the whole answer; returns when it had arrived (monotonic)."""
    async with http.post(url + "/v1/chat/completions", json=body) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status} from {url}")
    return time.monotonic()


class Poller:
    """The direct /health poller, a separate process (so it does not share our loop)."""

    def __init__(self, port: int, interval: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", POLLER, str(port), str(interval)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    async def _line(self) -> str:
        assert self.proc.stdout is not None
        with anyio.fail_after(60):
            line = await anyio.to_thread.run_sync(self.proc.stdout.readline, abandon_on_cancel=True)
        if not line:
            raise RuntimeError("the poller exited")
        return line.strip()

    async def arm(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        if (line := await self._line()) != "polling":
            raise RuntimeError(f"poller said {line!r}")

    async def first_200(self) -> tuple[float, int]:
        line = await self._line()
        if not line.startswith("first200 "):
            raise RuntimeError(f"poller said {line!r}")
        _, at, probes = line.split()
        return float(at), int(probes)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def cold_starts(
    binary: Path,
    model_path: Path,
    runs: int,
    *,
    interval: float = 0.002,
    warmup: int = 1,
    quiet: bool = True,
) -> list[ColdStart]:
    """`runs` measured cold starts (after `warmup` unmeasured ones) of one model."""
    yaml_text = llamaswap_yaml(
        binary, [LlamaModel(MODEL, model_path, 256)], {"logToStdout": "none" if quiet else "proxy"}
    )
    async with running_server(yaml_text) as server, server.client() as http:
        router = server.service.router
        upstream = server.config.models[MODEL].proxy
        port = urlsplit(upstream).port
        assert port is not None
        marks: dict[str, float] = {}

        def on_change(event: ProcessStateChanged) -> None:
            marks.setdefault(event.new, time.monotonic())

        router.processes[MODEL].add_listener(on_change)
        poller = Poller(port, interval)
        results: list[ColdStart] = []
        try:
            for index in range(warmup + runs):
                marks.clear()
                await poller.arm()
                answered = await _post(http, server.url, chat_body(index))
                first_200, probes = await poller.first_200()
                started = time.monotonic()
                direct = await _post(http, upstream, chat_body(index + 1000)) - started
                await router.unload([MODEL])
                spawned = marks["starting"]
                if index >= warmup:
                    results.append(
                        ColdStart(
                            spawn_to_answer=answered - spawned,
                            spawn_to_first_200=first_200 - spawned,
                            spawn_to_ready=marks["ready"] - spawned,
                            direct_request=direct,
                            probes=probes,
                        )
                    )
        finally:
            poller.close()
    return results


def report(results: list[ColdStart]) -> dict[str, Any]:
    def ms(values: list[float]) -> dict[str, float]:
        return {key: round(value * 1000, 2) for key, value in summary(values).items()}

    series = {
        "spawn_to_answer_ms": [r.spawn_to_answer for r in results],
        "spawn_to_first_200_ms": [r.spawn_to_first_200 for r in results],
        "added_ms": [r.added for r in results],
        "direct_request_ms": [r.direct_request for r in results],
        "added_minus_request_ms": [r.added - r.direct_request for r in results],
        "spawn_to_ready_ms": [r.spawn_to_ready for r in results],
        "probe_lag_ms": [r.spawn_to_ready - r.spawn_to_first_200 for r in results],
        "ready_to_answer_ms": [r.spawn_to_answer - r.spawn_to_ready for r in results],
    }
    return {
        "runs": len(results),
        **{name: ms(values) for name, values in series.items()},
        "poller_probes_p50": summary([float(r.probes) for r in results])["p50"],
    }


async def main(runs: int, interval: float) -> dict[str, Any] | None:
    binary = kit.llama_server_binary()
    if binary is None:
        print("llama-server not built (make e2e-build): skipped", file=sys.stderr)
        return None
    with tempfile.TemporaryDirectory(prefix="llamaswap-bench-") as directory:
        (model,) = kit.make_models(directory, [kit.TinyModel(MODEL, seed=4242)])
        results = await cold_starts(binary, model, runs, interval=interval)
    result = {
        "binary": str(binary),
        "poll_interval_ms": interval * 1000,
        "upstream": "llama-server, tiny 0.8 MB model, --threads 1 -c 256",
        **report(results),
    }
    rows = [
        ("(a) spawn -> answer through llamaswap", "spawn_to_answer_ms"),
        ("(b) spawn -> first 200 (direct poller)", "spawn_to_first_200_ms"),
        ("a - b: added by llamaswap", "added_ms"),
        ("(c) the request sent directly", "direct_request_ms"),
        ("a - b - c", "added_minus_request_ms"),
        ("spawn -> llamaswap marks ready (r)", "spawn_to_ready_ms"),
        ("r - b: health-probe lag", "probe_lag_ms"),
        ("a - r: ready -> answer", "ready_to_answer_ms"),
    ]
    print(f"{runs} cold starts of real llama-server, direct poll every {interval * 1000:g} ms")
    print(f"{'':42} {'p50':>8} {'p95':>8} {'max':>8}  ms")
    for label, key in rows:
        stats = result[key]
        print(f"{label:42} {stats['p50']:8.1f} {stats['p95']:8.1f} {stats['max']:8.1f}")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--interval-ms", type=float, default=2.0)
    options = parser.parse_args()
    if options.runs < 1:
        parser.error("--runs must be at least 1")
    outcome = anyio.run(main, options.runs, options.interval_ms / 1000)
    if outcome is not None:
        save("real_readiness", outcome)
