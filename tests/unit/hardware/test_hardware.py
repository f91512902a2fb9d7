"""Hardware facts and samples: rocm-smi's CSV, NVML's absence, the snapshot's shape and
the /metrics gauges built from a sample."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from llamaswap.hardware import PerformanceMonitor, detect, gpus
from llamaswap.http.metrics import HardwareCollector

HEADER = (
    "device,Device Name,GUID,Temperature (Sensor edge) (C),Temperature (Sensor memory) (C),"
    "Fan speed (%),Average Graphics Package Power (W),GPU use (%),VRAM Total Memory (B),"
    "VRAM Total Used Memory (B),Card Series,GFX Version"
)
CARD = "card0,Navi 31,1234,45.0,60.0,30,120.5,87,25753026560,12876513280,Radeon RX 7900 XTX,gfx1100"
ROCM = f"\nWARNING: some banner\n{HEADER}\n{CARD}\n"


def test_rocm_smi_csv_becomes_gpu_stats_and_accelerators() -> None:
    rows = gpus.parse_rocm_csv(ROCM)
    stat = gpus.rocm_stat(rows[0], "2026-01-01T00:00:00.000000Z")
    assert stat is not None
    assert stat["id"] == 0 and stat["name"] == "Radeon RX 7900 XTX card0 (gfx1100)"
    assert (stat["temp_c"], stat["vram_temp_c"], stat["gpu_util_pct"]) == (45, 60, 87.0)
    assert (stat["mem_total_mb"], stat["mem_used_mb"]) == (24560, 12280)
    assert stat["mem_util_pct"] == 50.0 and stat["power_draw_w"] == 120.5
    accelerator = gpus.rocm_accelerator(rows[0])
    assert accelerator["vendor"] == "AMD" and accelerator["architecture"] == "gfx1100"
    assert accelerator["memory"] == {"kind": "dedicated", "capacity_bytes": 25753026560}
    assert gpus.parse_rocm_csv("no csv here") == []
    assert gpus.rocm_stat({"device": "weird"}, "t") is None


def test_without_a_driver_there_are_no_nvidia_gpus() -> None:
    nvml = gpus.Nvml()  # this machine has no NVIDIA driver
    assert not nvml.available and nvml.stats("t") == [] and nvml.accelerators() == []


def test_the_snapshot_is_llama_swaps_schema() -> None:
    snapshot = detect("9.9")
    assert snapshot is not None
    assert snapshot["schema_version"] == 1 and snapshot["capture"]["scope"] == "inference_host"
    assert snapshot["memory"]["capacity_bytes"] > 0
    assert snapshot["architecture"]["name"] in ("x86_64", "arm64", "other")
    assert snapshot["operating_system"]["family"] == "linux"
    assert snapshot["environment"]["kind"] in (
        "native",
        "container",
        "virtual_machine",
        "wsl",
        "unknown",
    )
    cpu = snapshot["cpu"]
    assert cpu["logical_thread_count"] >= (cpu["physical_core_count"] or 1)
    assert [a["index"] for a in snapshot["accelerators"]] == list(
        range(len(snapshot["accelerators"]))
    )


def test_a_sample_and_the_after_filter() -> None:
    monitor = PerformanceMonitor(lambda: 5.0, lambda: True)
    monitor.sample()
    ((moment, stat),) = list(monitor.sys_stats)
    assert stat["mem_total_mb"] > 0 and len(stat["cpu_util_per_core"]) >= 1
    assert monitor.current()[0] == [stat]
    assert monitor.current(after=moment) == ([], [])
    assert monitor.sys_stats.maxlen == 720  # an hour at 5 s


def test_gauges_follow_the_newest_sample() -> None:
    system = {
        "cpu_util_per_core": [10.0, 30.0],
        "mem_total_mb": 100,
        "mem_used_mb": 40,
        "mem_free_mb": 60,
        "swap_total_mb": 0,
        "swap_used_mb": 0,
        "load_avg_1": 0.5,
        "load_avg_5": 0.25,
        "load_avg_15": 0.1,
        "net_io": [{"name": "eth0", "bytes_recv": 5, "bytes_sent": 7}],
    }
    gpu = gpus.rocm_stat(gpus.parse_rocm_csv(ROCM)[0], "t")
    assert gpu is not None
    registry = CollectorRegistry()
    registry.register(HardwareCollector(lambda: (system, [gpu])))
    text = generate_latest(registry).decode()
    assert 'llamaswap_cpu_util_percent{core="1"} 30.0' in text
    assert "llamaswap_memory_used_bytes 4.194304e+07" in text
    assert 'llamaswap_load_average{interval="5m"} 0.25' in text
    assert 'llamaswap_network_bytes_total{direction="sent",interface="eth0"} 7.0' in text
    name = "Radeon RX 7900 XTX card0 (gfx1100)"
    assert f'llamaswap_gpu_util_percent{{id="0",name="{name}",uuid="1234"}} 87.0' in text
    empty = CollectorRegistry()
    empty.register(HardwareCollector(lambda: (None, [])))
    assert generate_latest(empty) == b""
