"""Everything the HTTP handlers share: the config, the router, logs, the HTTP clients.

One `Service` per running server, stored on the aiohttp application. Handlers read
the current config from here (a reload swaps it), talk to the router only through
leases and its public calls, and never decide from a process state they read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from llamaswap.config import Config
from llamaswap.runtime.events import EventBus
from llamaswap.runtime.logs import LogRing
from llamaswap.runtime.router import RouterActor

from .naming import Selectors
from .pool import UpstreamPool

DEFAULT_MAX_BODY = 64 * 1024 * 1024


@dataclass
class Service:
    config: Config
    router: RouterActor
    bus: EventBus
    proxy_log: LogRing
    upstream_log: LogRing
    combined_log: LogRing  # the proxy and upstream lines interleaved as they were written
    max_body: int = DEFAULT_MAX_BODY
    active_profile: str | None = None
    selectors: Selectors = field(default_factory=Selectors)
    started_at: float = field(default_factory=time.time)
    http_client: aiohttp.ClientSession | None = None  # set while the HTTP app runs
    # keep-alive connections to plain http:// upstreams (the forwarding path's own client)
    upstream_pool: UpstreamPool = field(default_factory=UpstreamPool)

    @property
    def client(self) -> aiohttp.ClientSession:
        """The one shared upstream HTTP client (created when the app starts)."""
        assert self.http_client is not None, "the HTTP application has not started"
        return self.http_client

    def model_log(self, model_id: str) -> LogRing | None:
        return self.router.model_logs.get(model_id)


SERVICE = web.AppKey("llamaswap_service", Service)


def service_of(request: web.Request) -> Service:
    return request.app[SERVICE]


def new_client_session() -> aiohttp.ClientSession:
    """LLM streams are long: no total timeout; bodies pass through undecoded."""
    connector = aiohttp.TCPConnector(limit=256, limit_per_host=256, keepalive_timeout=60)
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=None),
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
        trust_env=False,
    )
