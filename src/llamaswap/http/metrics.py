"""Prometheus metrics about swaps, queues and requests, fed from runtime events.

Each application owns its registry rather than using prometheus-client's global one:
a process may build many applications (tests do), and the global registry refuses a
metric name registered twice. The values come from bus listeners, which run
synchronously inside the router and the request handlers; so every update is a few
dictionary operations, and a failing update is logged and dropped, never raised into
the code that published the event.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder

from llamaswap.fsm import Spec, shipped_spec
from llamaswap.runtime.events import (
    EventBus,
    ModelsConfigured,
    ProcessStateChanged,
    RequestFinished,
    RouterSnapshot,
    SwapFinished,
    SwapStarted,
)

log = logging.getLogger("llamaswap.metrics")

# Loads take from well under a second (small models, warm page cache) to minutes.
LOAD_BUCKETS = (0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
# Requests range from a quick embedding to a long generation.
REQUEST_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class Metrics:
    """The collectors of one application and the bus listener that updates them.

    The per-state series come from the process spec (`spec`): the state gauge is one-hot
    over every state it declares and the transition counter is labelled by its events,
    so a state added to the spec shows up here with no code change.
    """

    def __init__(self, spec: Spec | None = None) -> None:
        self.spec = spec or shipped_spec("process")
        self.states = tuple(self.spec.states)
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.swaps = Counter(
            "llamaswap_swaps_total",
            "Swaps started to load a model (evicting others as needed).",
            ["model"],
            registry=registry,
        )
        self.swap_failures = Counter(
            "llamaswap_swap_failures_total",
            "Swaps that ended without the model becoming ready.",
            ["model"],
            registry=registry,
        )
        self.load_seconds = Histogram(
            "llamaswap_load_seconds",
            "Seconds from the swap decision until the model was ready (successful swaps).",
            ["model"],
            buckets=LOAD_BUCKETS,
            registry=registry,
        )
        self.queue_length = Gauge(
            "llamaswap_queue_length",
            "Requests waiting for the model (queued or waiting on its swap).",
            ["model"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "llamaswap_in_flight",
            "Requests currently being served by the model.",
            ["model"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "llamaswap_request_seconds",
            "Duration of proxied requests, including any wait for a swap.",
            ["model"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.requests = Counter(
            "llamaswap_requests_total",
            "Proxied requests by model and HTTP status.",
            ["model", "status"],
            registry=registry,
        )
        self.key_requests = Counter(
            "llamaswap_key_requests_total",
            "Proxied requests by API key (its apiKeys name, never the key), model and status.",
            ["key", "model", "status"],
            registry=registry,
        )
        self.errors = Counter(
            "llamaswap_errors_total",
            "Proxied requests answered with a status of 400 or more.",
            ["model"],
            registry=registry,
        )
        self.model_state = Gauge(
            "llamaswap_model_state",
            "1 for the model's current process state, 0 for the others (spec/process.fsm.yaml).",
            ["model", "state"],
            registry=registry,
        )
        self.transitions = Counter(
            "llamaswap_model_transitions",
            "Process lifecycle transitions by model and event (spec/process.fsm.yaml).",
            ["model", "event"],
            registry=registry,
        )
        # Models with a queue/in-flight series: a snapshot omits idle models, and
        # their series must drop to 0 rather than keep the last busy value.
        self._gauged: set[str] = set()
        self._request_series: dict[tuple[str, int], _RequestSeries] = {}
        self._key_series: dict[tuple[str, str, int], Any] = {}  # (key, model, status)
        self._count_series: dict[str, tuple[Any, Any]] = {}  # (queue, in flight) children
        # the listener sees every event on the bus (several per request): one dict
        # lookup finds what an event updates, and most need nothing
        self._handlers: dict[type, Callable[[Any], None]] = {
            SwapStarted: self._swap_started,
            SwapFinished: self._swap_finished,
            RouterSnapshot: self._set_counts,
            ProcessStateChanged: self._state_changed,
            RequestFinished: self._request_finished,
            ModelsConfigured: self._models_configured,
        }
        self._last_counts: dict[str, tuple[int, int]] = {}
        self._known: set[str] = set()  # the configured models

    def seed(
        self, models: list[str], state_of: Callable[[str], str], snapshot: RouterSnapshot
    ) -> None:
        """Start from the current state, so idle models show 0 before any event arrives."""
        for model in models:
            self._set_state(model, state_of(model))
        self._gauged.update(models)
        self._known.update(models)
        self._set_counts(snapshot)

    def attach(self, bus: EventBus) -> None:
        bus.add_listener(self.observe)

    def detach(self, bus: EventBus) -> None:
        bus.remove_listener(self.observe)

    def observe(self, event: object) -> None:
        """The bus listener: never raises, whatever the event."""
        update = self._handlers.get(type(event))
        if update is None:
            return
        try:
            update(event)
        except Exception:
            log.warning("metrics: could not record %r", event, exc_info=True)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The registry in the format the scraper accepts: (body, Content-Type)."""
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type

    def _swap_started(self, event: SwapStarted) -> None:
        self.swaps.labels(event.target).inc()

    def _swap_finished(self, event: SwapFinished) -> None:
        if event.error:
            self.swap_failures.labels(event.target).inc()
        else:
            self.load_seconds.labels(event.target).observe(event.seconds)

    def _state_changed(self, event: ProcessStateChanged) -> None:
        self._set_state(event.model, event.new)
        self.transitions.labels(event.model, event.event).inc()

    def _request_finished(self, event: RequestFinished) -> None:
        self._per_request(event.model, event.status).observe(event.duration)
        if event.key_id:  # only with apiKeys configured
            key = (event.key_id, event.model, event.status)
            series = self._key_series.get(key)
            if series is None:
                series = self._key_series[key] = self.key_requests.labels(
                    event.key_id, event.model, str(event.status)
                )
            series.inc()

    def _models_configured(self, event: ModelsConfigured) -> None:
        self._configure(event.models, event.fresh)

    def _configure(self, models: tuple[str, ...], fresh: tuple[str, ...]) -> None:
        """After a reload: removed models lose every series, new ones start at zero,
        and models with a new process show its state (stopped), not the old one's."""
        current = set(models)
        new = current - self._known
        for model in self._known - current:
            self._forget(model)
        for model in sorted(new):
            self._last_counts[model] = (0, 0)
            self.queue_length.labels(model).set(0)
            self.in_flight.labels(model).set(0)
        for model in sorted(new | (current & set(fresh))):
            self._set_state(model, self.spec.initial)
        self._gauged = set(current)
        self._known = current

    def _forget(self, model: str) -> None:
        per_model = (
            self.swaps,
            self.swap_failures,
            self.load_seconds,
            self.queue_length,
            self.in_flight,
            self.request_seconds,
            self.errors,
        )
        labelled: list[tuple[Counter | Gauge | Histogram, tuple[str, ...]]]
        labelled = [(metric, (model,)) for metric in per_model]
        labelled += [(self.model_state, (model, state)) for state in self.states]
        labelled += [(self.transitions, (model, event)) for event in self.spec.events]
        for key in [key for key in self._request_series if key[0] == model]:
            del self._request_series[key]
            labelled.append((self.requests, (model, str(key[1]))))
        for key_series in [key for key in self._key_series if key[1] == model]:
            del self._key_series[key_series]
            labelled.append((self.key_requests, (key_series[0], model, str(key_series[2]))))
        for metric, labels in labelled:
            with contextlib.suppress(KeyError):  # a series that was never created
                metric.remove(*labels)
        self._last_counts.pop(model, None)
        self._count_series.pop(model, None)

    def _per_request(self, model: str, status: int) -> _RequestSeries:
        """The series one finished request touches, looked up once per (model, status)."""
        key = (model, status)
        series = self._request_series.get(key)
        if series is None:
            series = self._request_series[key] = _RequestSeries(
                self.request_seconds.labels(model),
                self.requests.labels(model, str(status)),
                self.errors.labels(model) if status >= 400 else None,
            )
        return series

    def _set_counts(self, snapshot: RouterSnapshot) -> None:
        """Set the gauges of models whose counts changed (missing from a snapshot = 0)."""
        last = self._last_counts
        queued, in_flight = snapshot.queued, snapshot.in_flight
        models = self._gauged
        if not models.issuperset(queued) or not models.issuperset(in_flight):
            models = self._gauged = models | queued.keys() | in_flight.keys()
        for model in models:
            counts = (queued.get(model, 0), in_flight.get(model, 0))
            before = last.get(model)
            if before == counts:
                continue
            last[model] = counts
            series = self._count_series.get(model)
            if series is None:
                series = self._count_series[model] = (
                    self.queue_length.labels(model),
                    self.in_flight.labels(model),
                )
            if before is None or before[0] != counts[0]:  # each set takes a lock
                series[0].set(counts[0])
            if before is None or before[1] != counts[1]:
                series[1].set(counts[1])

    def _set_state(self, model: str, current: str) -> None:
        for state in self.states:
            self.model_state.labels(model, state).set(1 if state == current else 0)


@dataclass(frozen=True)
class _RequestSeries:
    latency: Any
    count: Any
    errors: Any | None

    def observe(self, duration: float) -> None:
        self.latency.observe(duration)
        self.count.inc()
        if self.errors is not None:
            self.errors.inc()


MIB = 1024 * 1024
GPU_GAUGES = (
    ("llamaswap_gpu_temperature_celsius", "GPU temperature in Celsius", "temp_c", 1),
    ("llamaswap_gpu_vram_temperature_celsius", "GPU VRAM temperature in Celsius", "vram_temp_c", 1),
    ("llamaswap_gpu_util_percent", "GPU utilization percent (0-100)", "gpu_util_pct", 1),
    (
        "llamaswap_gpu_memory_util_percent",
        "GPU memory utilization percent (0-100)",
        "mem_util_pct",
        1,
    ),
    ("llamaswap_gpu_memory_used_bytes", "GPU memory used in bytes", "mem_used_mb", MIB),
    ("llamaswap_gpu_memory_total_bytes", "GPU memory total in bytes", "mem_total_mb", MIB),
    ("llamaswap_gpu_fan_speed_percent", "GPU fan speed percent (0-100)", "fan_speed_pct", 1),
    ("llamaswap_gpu_power_draw_watts", "GPU power draw in watts", "power_draw_w", 1),
)
MEMORY_GAUGES = (
    ("llamaswap_memory_total_bytes", "Total memory in bytes", "mem_total_mb"),
    ("llamaswap_memory_used_bytes", "Used memory in bytes", "mem_used_mb"),
    ("llamaswap_memory_free_bytes", "Free memory in bytes", "mem_free_mb"),
    ("llamaswap_swap_total_bytes", "Total swap in bytes", "swap_total_mb"),
    ("llamaswap_swap_used_bytes", "Used swap in bytes", "swap_used_mb"),
)
Latest = Callable[[], tuple[dict[str, Any] | None, list[dict[str, Any]]]]


class HardwareCollector:
    """CPU, memory, load, network and GPU gauges from the performance monitor's newest
    sample, under llama-swap's metric names (`internal/perf/prometheus.go`); nothing
    before the first sample, no GPU series without GPUs. Read at scrape time only."""

    def __init__(self, latest: Latest) -> None:
        self._latest = latest

    def describe(self) -> list[Any]:
        return []  # series come and go with the hardware: never pre-declared

    def collect(self) -> Iterator[Any]:
        system, gpus = self._latest()
        if system is not None:
            yield from _system_families(system)
        if gpus:
            yield from _gpu_families(gpus)


def _system_families(stat: dict[str, Any]) -> Iterator[Any]:
    cpu = GaugeMetricFamily(
        "llamaswap_cpu_util_percent", "CPU utilization per core (0-100)", labels=["core"]
    )
    for core, percent in enumerate(stat.get("cpu_util_per_core", [])):
        cpu.add_metric([str(core)], percent)
    yield cpu
    for name, text, key in MEMORY_GAUGES:
        if key in stat:
            yield GaugeMetricFamily(name, text, value=stat[key] * MIB)
    load = GaugeMetricFamily("llamaswap_load_average", "Load average", labels=["interval"])
    for interval in ("1", "5", "15"):
        load.add_metric([f"{interval}m"], stat.get(f"load_avg_{interval}", 0.0))
    yield load
    if stat.get("net_io"):
        network = CounterMetricFamily(
            "llamaswap_network_bytes",
            "Total network bytes transferred",
            labels=["interface", "direction"],
        )
        for io in stat["net_io"]:
            network.add_metric([io["name"], "recv"], io["bytes_recv"])
            network.add_metric([io["name"], "sent"], io["bytes_sent"])
        yield network


def _gpu_families(gpus: list[dict[str, Any]]) -> Iterator[Any]:
    for name, text, key, scale in GPU_GAUGES:
        family = GaugeMetricFamily(name, text, labels=["id", "name", "uuid"])
        for gpu in sorted(gpus, key=lambda g: g["id"]):
            family.add_metric([str(gpu["id"]), gpu["name"], gpu["uuid"]], gpu[key] * scale)
        yield family
