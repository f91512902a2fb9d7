"""`GET /api/hardware`: llama-swap's HardwareSnapshot (schema version 1), taken once.

Static facts only (what the machine is, not how busy it is): architecture, operating
system, execution environment, CPU, memory and accelerators. Unknown facts are null,
never invented. Memory is required: without it nothing is known and the route answers
503, as llama-swap does when its detection failed. Blocking: run it in a thread.
"""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from . import gpus

ARCHITECTURES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}
ARCHITECTURES |= {"armv7l": "armv7", "ppc64le": "ppc64le", "riscv64": "riscv64", "s390x": "s390x"}


def detect(version: str, nvml: gpus.Nvml | None = None) -> dict[str, Any] | None:
    """The snapshot, or None when not even the memory size can be read."""
    memory = _memory_bytes()
    if not memory:
        return None
    machine = platform.machine()
    architecture = ARCHITECTURES.get(machine.lower(), "other")
    accelerators = (nvml or gpus.Nvml()).accelerators()
    accelerators += [gpus.rocm_accelerator(row) for row in gpus.rocm_rows()]
    for index, accelerator in enumerate(accelerators):
        accelerator["index"] = index
    return {
        "schema_version": 1,
        "captured_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "capture": {
            "scope": "inference_host",
            "method": "detected",
            "detector": {"name": "llamaswap", "version": version},
        },
        "architecture": {
            "name": architecture,
            "raw_name": machine if architecture != machine else None,
        },
        "operating_system": _operating_system(),
        "environment": _environment(),
        "cpu": _cpu(),
        "memory": {"capacity_bytes": memory},
        "accelerators": accelerators,
    }


def _memory_bytes() -> int:
    try:
        return int(psutil.virtual_memory().total)
    except Exception:  # no /proc/meminfo (a sandbox): nothing is known
        return 0


def _os_release() -> dict[str, str]:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return {}
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition("=")
        fields[key.strip()] = value.strip().strip('"')
    return fields


def _operating_system() -> dict[str, Any]:
    release = _os_release()
    return {
        "family": "linux" if platform.system() == "Linux" else "other",
        "name": release.get("NAME") or None,
        "version": release.get("VERSION_ID") or None,
        "kernel": platform.release() or None,
        **({} if platform.system() == "Linux" else {"raw_family": platform.system()}),
    }


def _environment() -> dict[str, Any]:
    kernel = platform.release().lower()
    if "microsoft" in kernel or "wsl" in kernel:
        return {"kind": "wsl", "name": "WSL", "version": None}
    if Path("/.dockerenv").exists():
        return {"kind": "container", "name": "Docker", "version": None}
    if Path("/run/.containerenv").exists():
        return {"kind": "container", "name": "Podman", "version": None}
    return {"kind": "unknown", "name": None, "version": None}


def _cpu() -> dict[str, Any]:
    vendor = model = None
    sockets: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key == "vendor_id" and vendor is None:
                vendor = value or None
            elif key == "model name" and model is None:
                model = value or None
            elif key == "physical id":
                sockets.add(value)
    except OSError:
        pass
    logical = os.cpu_count()
    try:
        physical = psutil.cpu_count(logical=False)
    except Exception:
        physical = None
    if physical and logical and physical > logical:
        physical = None
    return {
        "vendor": vendor,
        "model": model,
        "socket_count": len(sockets) or None,
        "physical_core_count": physical or None,
        "logical_thread_count": logical or None,
    }
