"""What the machine has, what is free and what each model needs, for operators.

Read at the moment of asking from the config (declared capacity and needs) and the
router's display copies of what the probes last measured (`free`) and what each model
was measured to use (`measured`, also recalled from the activity store). Shown in
`/api/hardware` under `resources`, in the UI's hardware panel, and in `/metrics`. The
scheduler decides with the larger of declared and measured; this only shows them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily

from .service import Service


def capacity_view(service: Service) -> dict[str, Any]:
    """resource -> {capacity, probe?, free?, models: {model: {declared, learned?, need}}}."""
    config, router = service.config, service.router
    view: dict[str, Any] = {}
    for name, capacity in config.resources.items():
        probe = config.probes.get(name)
        models: dict[str, Any] = {}
        for model_id, model in config.models.items():
            declared = model.resources.get(name)
            learned = router.measured.get(model_id, {}).get(name)
            if declared is None and learned is None:
                continue
            entry: dict[str, Any] = {"declared": declared or 0.0}
            if learned is not None:
                entry["learned"] = learned
            entry["need"] = max(entry["declared"], learned or 0.0)
            models[model_id] = entry
        resource: dict[str, Any] = {"capacity": capacity}
        if probe is not None:
            resource["probe"] = probe.probe
            if name in router.free:
                resource["free"] = router.free[name]
        resource["models"] = models
        view[name] = resource
    return view


class CapacityCollector:
    """`/metrics` series for declared resources, read at scrape time:
    llamaswap_resource_capacity{resource}, llamaswap_resource_free{resource} (probed
    resources, once measured), llamaswap_model_resource_need{model,resource,source}
    (source: declared, learned)."""

    def __init__(self, service: Service) -> None:
        self._service = service

    def describe(self) -> list[Any]:
        return []  # series follow the config (reloads add and remove them)

    def collect(self) -> Iterator[Any]:
        view = capacity_view(self._service)
        if not view:
            return
        capacity = GaugeMetricFamily(
            "llamaswap_resource_capacity", "What the machine has (resources).", labels=["resource"]
        )
        free = GaugeMetricFamily(
            "llamaswap_resource_free",
            "What the resource's probe last measured free.",
            labels=["resource"],
        )
        need = GaugeMetricFamily(
            "llamaswap_model_resource_need",
            "A model's need: declared in the config, or learned by the probes.",
            labels=["model", "resource", "source"],
        )
        for name, resource in view.items():
            capacity.add_metric([name], resource["capacity"])
            if "free" in resource:
                free.add_metric([name], resource["free"])
            for model, entry in resource["models"].items():
                need.add_metric([model, name, "declared"], entry["declared"])
                if "learned" in entry:
                    need.add_metric([model, name, "learned"], entry["learned"])
        yield capacity
        yield free
        yield need
