"""GPUs, through NVIDIA's NVML (`nvidia-ml-py`) and AMD's `rocm-smi` when installed.

Each reader returns llama-swap's `GpuStat` dicts (live figures) or its `Accelerator`
dicts (static facts); a machine without the driver or the tool simply has no GPUs here.
Blocking calls: run them in a worker thread.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from typing import Any

MIB = 1024 * 1024
ROCM_SMI_ARGS = (
    *("-i", "-P", "-t", "-f", "-u", "--showmemuse", "--showmeminfo", "vram"),
    *("--showproductname", "--csv"),
)
ROCM_TIMEOUT = 5.0

try:  # nvidia-ml-py: pure Python over the driver's libnvidia-ml (absent without a driver)
    import pynvml
except ImportError:  # pragma: no cover - it is a dependency, but stay optional
    pynvml = None


class Nvml:
    """NVML, initialised once; `available` is False without the library or a GPU."""

    def __init__(self) -> None:
        self.available = False
        if pynvml is None:
            return
        try:
            pynvml.nvmlInit()
            self.available = pynvml.nvmlDeviceGetCount() > 0
        except Exception:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
            self.available = False

    def handles(self) -> list[Any]:
        if not self.available:
            return []
        try:
            count = pynvml.nvmlDeviceGetCount()
            return [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except Exception:
            return []

    def stats(self, now: str) -> list[dict[str, Any]]:
        out = []
        for index, handle in enumerate(self.handles()):
            memory = _try(pynvml.nvmlDeviceGetMemoryInfo, handle)
            used = int(memory.used // MIB) if memory else 0
            total = int(memory.total // MIB) if memory else 0
            rates = _try(pynvml.nvmlDeviceGetUtilizationRates, handle)
            power = _try(pynvml.nvmlDeviceGetPowerUsage, handle)
            out.append(
                {
                    "timestamp": now,
                    "id": index,
                    "name": _text(_try(pynvml.nvmlDeviceGetName, handle)),
                    "uuid": _text(_try(pynvml.nvmlDeviceGetUUID, handle)),
                    "temp_c": int(_try(pynvml.nvmlDeviceGetTemperature, handle, 0) or 0),
                    "vram_temp_c": 0,
                    "gpu_util_pct": float(rates.gpu) if rates else 0.0,
                    "mem_util_pct": used / total * 100 if total else 0.0,
                    "mem_used_mb": used,
                    "mem_total_mb": total,
                    "fan_speed_pct": float(_try(pynvml.nvmlDeviceGetFanSpeed, handle) or 0),
                    "power_draw_w": (power or 0) / 1000,
                }
            )
        return out

    def accelerators(self) -> list[dict[str, Any]]:
        driver = _text(_try(pynvml.nvmlSystemGetDriverVersion)) if self.available else ""
        out = []
        for handle in self.handles():
            memory = _try(pynvml.nvmlDeviceGetMemoryInfo, handle)
            limit = _try(pynvml.nvmlDeviceGetPowerManagementLimit, handle)
            out.append(
                accelerator(
                    vendor="NVIDIA",
                    model=_text(_try(pynvml.nvmlDeviceGetName, handle)),
                    capacity=int(memory.total) if memory else None,
                    driver=("NVIDIA", driver),
                    power_limit=limit / 1000 if limit else None,
                )
            )
        return out


def accelerator(
    *,
    vendor: str,
    model: str,
    capacity: int | None,
    driver: tuple[str, str],
    power_limit: float | None,
    architecture: str = "",
) -> dict[str, Any]:
    """llama-swap's `Accelerator` (the index is set when the list is complete)."""
    return {
        "index": 0,
        "kind": "gpu",
        "vendor": vendor,
        "model": model or None,
        "architecture": architecture or None,
        "memory": {"kind": "dedicated", "capacity_bytes": capacity or None},
        "driver": {"name": driver[0], "version": driver[1]} if driver[1] else None,
        "power_limit_watts": power_limit if power_limit and power_limit > 0 else None,
    }


def rocm_rows() -> list[dict[str, str]]:
    """`rocm-smi`'s CSV as one dict per card ([] without the tool or on failure)."""
    tool = shutil.which("rocm-smi")
    if tool is None:
        return []
    try:
        done = subprocess.run(
            [tool, *ROCM_SMI_ARGS], capture_output=True, text=True, timeout=ROCM_TIMEOUT
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return parse_rocm_csv(done.stdout) if done.returncode == 0 else []


def parse_rocm_csv(text: str) -> list[dict[str, str]]:
    lines = [line for line in text.splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if line.startswith("device,")), None)
    if start is None:
        return []
    return [
        {key: (value or "").strip() for key, value in row.items() if key}
        for row in csv.DictReader(io.StringIO("\n".join(lines[start:])))
    ]


def rocm_stat(row: dict[str, str], now: str) -> dict[str, Any] | None:
    """llama-swap's parseRocmSmiLine."""
    device = row.get("device", "")
    try:
        index = int(device.removeprefix("card"))
    except ValueError:
        return None
    total = _int(row.get("VRAM Total Memory (B)")) // MIB
    used = _int(row.get("VRAM Total Used Memory (B)")) // MIB
    series = row.get("Card Series", "") or row.get("Device Name", "")
    name = (
        f"{series} {device} ({row.get('GFX Version', '')})" if series not in ("", "N/A") else device
    )
    power = row.get("Current Socket Graphics Package Power (W)") or row.get(
        "Average Graphics Package Power (W)"
    )
    return {
        "timestamp": now,
        "id": index,
        "name": name,
        "uuid": row.get("GUID", ""),
        "temp_c": int(_float(row.get("Temperature (Sensor edge) (C)"))),
        "vram_temp_c": int(_float(row.get("Temperature (Sensor memory) (C)"))),
        "gpu_util_pct": _float(row.get("GPU use (%)")),
        "mem_util_pct": used / total * 100 if total else 0.0,
        "mem_used_mb": used,
        "mem_total_mb": total,
        "fan_speed_pct": _float(row.get("Fan speed (%)")),
        "power_draw_w": _float(power),
    }


def rocm_accelerator(row: dict[str, str]) -> dict[str, Any]:
    model = row.get("Card Series", "") or row.get("Device Name", "")
    return accelerator(
        vendor="AMD",
        model="" if model == "N/A" else model,
        capacity=_int(row.get("VRAM Total Memory (B)")) or None,
        driver=("amdgpu", ""),
        power_limit=None,
        architecture=row.get("GFX Version", ""),
    )


def _try(function: Any, *args: Any) -> Any:
    try:
        return function(*args)
    except Exception:
        return None


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value) if value is not None else ""


def _float(value: str | None) -> float:
    try:
        return float(value or 0)
    except ValueError:
        return 0.0


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0
