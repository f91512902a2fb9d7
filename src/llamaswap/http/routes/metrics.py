"""`GET /metrics`: Prometheus text about swaps, queues and requests (§2.7).

llama-swap's /metrics reports host and GPU statistics; ours reports what the router
does (see `llamaswap.http.metrics`), which is what an operator of a swapping proxy
needs to alert on. Like llama-swap, it answers 503 when `performance.disabled` is set,
and it is behind the API keys like every operator endpoint.
"""

from __future__ import annotations

from aiohttp import web

from ..capacity import CapacityCollector
from ..metrics import Metrics
from ..service import SERVICE, service_of

METRICS = web.AppKey("llamaswap_metrics", Metrics)
DISABLED_BODY = "# performance monitor not available"


def add_routes(app: web.Application) -> None:
    """Create this app's collectors and listen to the bus from now until cleanup."""
    service = app[SERVICE]
    metrics = Metrics()
    models = list(service.config.models)
    metrics.seed(models, service.router.model_state, service.router.snapshot)
    metrics.attach(service.bus)
    metrics.registry.register(CapacityCollector(service))

    async def detach(_app: web.Application) -> None:
        metrics.detach(service.bus)

    app[METRICS] = metrics
    app.on_cleanup.append(detach)
    app.router.add_get("/metrics", scrape)


async def scrape(request: web.Request) -> web.Response:
    if service_of(request).config.performance_disabled:
        return web.Response(status=503, text=DISABLED_BODY, content_type="text/plain")
    body, content_type = request.app[METRICS].exposition(request.headers.get("Accept"))
    return web.Response(body=body, headers={"Content-Type": content_type})
