"""Our top-level keys for llamaswap's own HTTP server: how long a client may take to
send a request head, how many connections may be open, which other web origins may
send state-changing requests, and which peers may say who the client is.

llama-swap has none of these (its Go server sets no timeouts and trusts
X-Forwarded-For from anyone); the http layer reads the values checked here.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from llamaswap.config.errors import Problems
from llamaswap.config.schema import RawTop

ANY_ORIGIN = "*"
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*$")


@dataclass
class Serving:
    request_header_timeout: float = 10.0
    max_connections: int = 1000
    allowed_origins: list[str] = field(default_factory=list)
    trusted_proxies: list[str] = field(default_factory=list)


def build_serving(raw: RawTop, problems: Problems) -> Serving:
    serving = Serving(
        request_header_timeout=raw.request_header_timeout, max_connections=raw.max_connections
    )
    if raw.request_header_timeout < 0:
        problems.add(("requestHeaderTimeout",), "must be >= 0 seconds (0 = no limit)")
    if raw.max_connections < 0:
        problems.add(("maxConnections",), "must be >= 0 (0 = no limit)")
    for index, text in enumerate(raw.allowed_origins):
        origin = normalise_origin(text)
        if origin is None:
            problems.add(
                ("allowedOrigins", index),
                f'must be "*" or an origin such as https://chat.example.com '
                f"(scheme://host[:port], no path), got {text!r}",
            )
        elif origin not in serving.allowed_origins:
            serving.allowed_origins.append(origin)
    for index, text in enumerate(raw.trusted_proxies):
        try:
            network = ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            problems.add(
                ("trustedProxies", index),
                f"must be an IP address or a CIDR range such as 10.0.0.0/8, got {text!r}",
            )
        else:
            serving.trusted_proxies.append(str(network))
    return serving


def normalise_origin(text: str) -> str | None:
    """`HTTPS://Chat.Example.com:443/` -> `https://chat.example.com`, as browsers send
    an Origin header (lower case, no default port); None if `text` is no origin."""
    text = text.strip()
    if text == ANY_ORIGIN:
        return ANY_ORIGIN
    try:
        parts = urlsplit(text.lower())
        port = parts.port
    except ValueError:
        return None
    if (
        not _SCHEME.match(parts.scheme)
        or not parts.hostname
        or parts.username is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or "://" not in text
    ):
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is not None and port != DEFAULT_PORTS.get(parts.scheme):
        host += f":{port}"
    return f"{parts.scheme}://{host}"
