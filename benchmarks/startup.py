"""Startup time: from spawning `llamaswap run` to its first HTTP 200 on /health.

Measured with a config of 1 model and of 200 models (none of them started: llamaswap
starts upstreams on demand), `--runs` times each; reported as p50 and max. The baseline,
taken in the same run, is the time from spawning `python -c "import aiohttp"` to its
exit (the interpreter plus the one library no HTTP server here can do without), and,
for context, the same with every library llamaswap imports at startup.

    python benchmarks/startup.py [--runs 10]

`idle_rss.py` uses the helpers here to write configs and start llamaswap.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import save, summary
from llamaswap.testing import upstream_command
from llamaswap.testing.ports import free_port

LIBRARIES = "aiohttp, anyio, pydantic, yaml, statemachine, prometheus_client"
POLL_SECONDS = 0.002


def write_config(path: Path, models: int) -> Path:
    """A config with `models` fake-upstream models (never started: no request comes)."""
    cmd = " ".join(upstream_command("${PORT}", "--silent", "--model", "MODEL"))
    lines = ["startPort: 20000", "logToStdout: none", "models:"]
    for index in range(models):
        name = f"model-{index:03d}"
        lines += [
            f"  {name}:",
            f"    cmd: {cmd.replace('MODEL', name)}",
            "    proxy: http://127.0.0.1:${PORT}",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def health_ok(port: int) -> bool:
    """One GET /health; False while nothing listens yet."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/health")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a process started in its own session, and everything in its group."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # leftovers in the group, if any


@contextlib.contextmanager
def llamaswap(config: Path) -> Iterator[tuple[subprocess.Popen[bytes], float]]:
    """Start `llamaswap run`; yields the process and the seconds to its first /health 200."""
    port = free_port()
    listen = f"127.0.0.1:{port}"
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "llamaswap", "run", "--config", str(config), "--listen", listen],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = started + 60
        while not health_ok(port):
            if process.poll() is not None:
                error = process.stderr.read().decode() if process.stderr else ""
                raise RuntimeError(f"llamaswap exited with {process.returncode}: {error}")
            if time.monotonic() > deadline:
                raise RuntimeError("llamaswap did not answer /health within 60 s")
            time.sleep(POLL_SECONDS)
        yield process, time.monotonic() - started
    finally:
        stop(process)


def time_to_exit(code: str) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.monotonic() - started


def main(runs: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as workdir:
        configs = {n: write_config(Path(workdir) / f"models-{n}.yaml", n) for n in (1, 200)}
        time_to_exit("import aiohttp")  # warm the page cache before anything is timed
        startup: dict[int, list[float]] = {1: [], 200: []}
        baseline, libraries = [], []
        for _ in range(runs):  # interleaved, so drift on a shared machine hits all alike
            baseline.append(time_to_exit("import aiohttp"))
            libraries.append(time_to_exit(f"import {LIBRARIES}"))
            for models, config in configs.items():
                with llamaswap(config) as (_, seconds):
                    startup[models].append(seconds)

    def ms(values: list[float]) -> dict[str, float]:
        return {k: v * 1000 for k, v in summary(values).items()}

    p50 = {n: summary(values)["p50"] for n, values in startup.items()}
    base = summary(baseline)["p50"]
    result = {
        "runs": runs,
        "baseline_import_aiohttp_ms": ms(baseline),
        "baseline_import_libraries_ms": ms(libraries),
        "startup_1_model_ms": ms(startup[1]),
        "startup_200_models_ms": ms(startup[200]),
        "added_p50_ms_1_model": (p50[1] - base) * 1000,
        "added_p50_ms_200_models": (p50[200] - base) * 1000,
    }
    for label, key in (
        ('baseline: python -c "import aiohttp" to exit', "baseline_import_aiohttp_ms"),
        ("context: import every library llamaswap uses", "baseline_import_libraries_ms"),
        ("llamaswap run, 1 model, to /health 200", "startup_1_model_ms"),
        ("llamaswap run, 200 models, to /health 200", "startup_200_models_ms"),
    ):
        figures = result[key]
        assert isinstance(figures, dict)
        print(f"{label:48s} p50 {figures['p50']:6.0f} ms   max {figures['max']:6.0f} ms")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    options = parser.parse_args()
    save("startup", main(options.runs))
