"""Who the client is and where a browser request comes from: trusted proxies, the
cross-site rule and CORS, worked out once per config so the per-request checks are
a few lookups.

Cross-site rule (docs/security.md): a POST/PUT/PATCH/DELETE whose `Origin` header
names another site is refused with 403 unless the origin is in `allowedOrigins`
(`"*"`: any). Same origin means the Origin's host[:port] is the host the request was
sent to (its Host header, or X-Forwarded-Host from a trusted proxy); loopback names
(localhost, 127.0.0.1, [::1]) count as one host when the ports agree. Requests
without an Origin header (curl, SDKs, servers) are not browsers' and pass.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from aiohttp import web

from llamaswap.config import Config
from llamaswap.config.serving import ANY_ORIGIN

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CROSS_SITE = frozenset({"cross-site", "same-site"})
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})
DEFAULT_PORTS = {"http": "80", "https": "443"}
PEER_CACHE_SIZE = 1024


@dataclass(frozen=True)
class Policy:
    """The front door's rules from one config, precomputed."""

    any_origin: bool = False
    origins: frozenset[str] = frozenset()
    proxies: tuple[IPNetwork, ...] = ()
    header_timeout: float = 10.0
    max_connections: int = 1000
    _trusted: dict[str, bool] = field(default_factory=dict, compare=False)

    @classmethod
    def from_config(cls, config: Config) -> Policy:
        return cls(
            any_origin=ANY_ORIGIN in config.allowed_origins,
            origins=frozenset(config.allowed_origins),
            proxies=tuple(ipaddress.ip_network(p) for p in config.trusted_proxies),
            header_timeout=config.request_header_timeout,
            max_connections=config.max_connections,
        )

    def is_trusted_proxy(self, peer: str | None) -> bool:
        """Whether `peer` (a direct peer's address) is a configured proxy; cached per
        address, since the same few proxies connect over and over."""
        if not self.proxies or not peer:
            return False
        known = self._trusted.get(peer)
        if known is None:
            address = _address(peer)
            known = address is not None and any(address in net for net in self.proxies)
            if len(self._trusted) >= PEER_CACHE_SIZE:
                self._trusted.clear()
            self._trusted[peer] = known
        return known

    def client_ip(self, request: web.Request) -> str:
        """The client's address: the direct peer, or what a trusted proxy reports."""
        peer = request.remote
        if not self.proxies or not self.is_trusted_proxy(peer):
            return peer or "-"
        forwarded = request.headers.getall("X-Forwarded-For", ())
        if forwarded:
            return self._first_untrusted(",".join(forwarded), peer or "-")
        real = request.headers.get("X-Real-IP", "").strip()
        return real if _address(real) is not None else peer or "-"

    def _first_untrusted(self, forwarded: str, peer: str) -> str:
        """Walk X-Forwarded-For from the right (nearest hop first) past our own proxies:
        the first hop that is not one of them is the client. Entries left of it were
        written by the client and prove nothing."""
        client = peer
        for entry in reversed(forwarded.split(",")):
            hop = entry.strip()
            if _address(hop) is None:
                break
            client = hop
            if not self.is_trusted_proxy(hop):
                break
        return client

    def cross_site(self, request: web.Request) -> str | None:
        """Why a browser's `request` is refused as cross-site, or None to let it in.

        Checked: state-changing methods and WebSocket handshakes by their Origin, and
        any other non-navigation request a browser marks `Sec-Fetch-Site: cross-site`
        or `same-site` (an `<img src=/upstream/big-model/>` would load that model).
        """
        headers = request.headers
        origin = headers.get("Origin")
        fetch_site = headers.get("Sec-Fetch-Site")
        if (origin is None and fetch_site is None) or self.any_origin:
            return None  # not a browser, or every origin is welcome
        if origin is not None and self.origin_allowed(origin, request):
            return None
        if origin is not None and (
            request.method in UNSAFE_METHODS or headers.get("Upgrade", "").lower() == "websocket"
        ):
            return f"origin {origin[:200]} is not allowed (allowedOrigins)"
        if fetch_site in CROSS_SITE and headers.get("Sec-Fetch-Mode") != "navigate":
            return f"{fetch_site} request from a page that is not allowed (allowedOrigins)"
        return None

    def origin_allowed(self, origin: str, request: web.Request) -> bool:
        """Whether a browser page at `origin` may use this server's answers and send it
        state-changing requests."""
        if self.any_origin:
            return True
        origin = origin.lower()
        return origin in self.origins or self._same_origin(origin, request)

    def _same_origin(self, origin: str, request: web.Request) -> bool:
        scheme, sep, netloc = origin.partition("://")
        if not sep:
            return False  # "null" (sandboxed frames, file: pages) is never ours
        host = request.host
        if self.proxies and self.is_trusted_proxy(request.remote):
            host = request.headers.get("X-Forwarded-Host", host).split(",")[0].strip()
        host = host.lower()
        default = DEFAULT_PORTS.get(scheme)
        if default and host.endswith(":" + default):
            host = host[: -len(default) - 1]
        if netloc == host:
            return True
        origin_host, origin_port = _split_host(netloc, default)
        our_host, our_port = _split_host(host, default)
        return (
            origin_host in LOOPBACK_HOSTS and our_host in LOOPBACK_HOSTS and origin_port == our_port
        )


def _address(text: str | None) -> IPAddress | None:
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _split_host(netloc: str, default_port: str | None) -> tuple[str, str | None]:
    """`host:port` / `[v6]:port` / `host` -> (host, port or the scheme's default)."""
    if netloc.startswith("["):
        host, _, rest = netloc.partition("]")
        return host + "]", rest.removeprefix(":") or default_port
    host, sep, port = netloc.rpartition(":")
    return (host, port) if sep else (netloc, default_port)


_cached: tuple[Config, Policy] | None = None


def policy_of(config: Config) -> Policy:
    """The policy for `config`, built once per config object (a reload makes a new one)."""
    global _cached
    cached = _cached
    if cached is not None and cached[0] is config:
        return cached[1]
    policy = Policy.from_config(config)
    _cached = (config, policy)
    return policy
