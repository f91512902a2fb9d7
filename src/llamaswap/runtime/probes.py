"""Measure what is free of a resource now: NVML for NVIDIA GPUs, or any command.

`probe: nvidia` sums the free memory of every NVIDIA GPU through NVML (`nvidia-ml-py`),
in MiB. Any other probe is a command (split like `cmd`, never run through a shell) that
prints the amount free now; the first number in its output counts, in the unit the
config uses for that resource. A probe that fails, prints no number or takes longer than
its `probeTimeout` raises `ProbeFailed` with the reason; the router then falls back to
the declared figures (see `scheduling.Probing`).
"""

from __future__ import annotations

import re
import subprocess

import anyio

from llamaswap.config import ResourceProbe, split_command

NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")
MIB = 1024 * 1024


class ProbeFailed(Exception):
    """The probe could not say what is free; the message says why."""


async def measure(probe: ResourceProbe) -> float:
    """What the probe says is free now."""
    try:
        with anyio.fail_after(probe.timeout):
            if probe.probe == "nvidia":
                return await anyio.to_thread.run_sync(nvidia_free_mib, abandon_on_cancel=True)
            return await _run(probe.probe)
    except TimeoutError:
        raise ProbeFailed(f"no answer within {probe.timeout:g}s") from None


def nvidia_free_mib() -> float:
    """Free memory of every NVIDIA GPU together, in MiB (NVML)."""
    try:
        import pynvml
    except ImportError:
        raise ProbeFailed(
            "the nvidia probe needs nvidia-ml-py (pip install nvidia-ml-py)"
        ) from None
    try:
        pynvml.nvmlInit()
        try:
            count = pynvml.nvmlDeviceGetCount()
            free = sum(
                pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(i)).free
                for i in range(count)
            )
        finally:
            pynvml.nvmlShutdown()
    except pynvml.NVMLError as exc:
        raise ProbeFailed(f"NVML: {exc}") from None
    if count == 0:
        raise ProbeFailed("NVML finds no GPU")
    return float(free) / MIB


async def _run(command: str) -> float:
    try:
        result = await anyio.run_process(split_command(command), stderr=subprocess.STDOUT)
    except (OSError, ValueError) as exc:
        raise ProbeFailed(f"cannot run {command!r}: {exc}") from None
    except subprocess.CalledProcessError as exc:
        raise ProbeFailed(f"{command!r} exited with code {exc.returncode}") from None
    found = NUMBER.search(result.stdout.decode("utf-8", "replace"))
    if found is None:
        raise ProbeFailed(f"{command!r} printed no number")
    return float(found.group())
