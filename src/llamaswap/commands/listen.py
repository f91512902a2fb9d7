"""`-listen` addresses read the way Go's net.Listen reads llama-swap's.

`:8080` and `[::]:8080` mean every interface (IPv4 and IPv6), `0.0.0.0:8080` every
IPv4 interface, `127.0.0.1:8080`, `localhost:8080` and `[::1]:8080` one host, and the
port may be a service name (`localhost:http`). As in Go, a bare port (`8080`) and an
IPv6 address without brackets are mistakes; unlike Go, an empty port (`localhost:`) is
one too (Go would pick a random port).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

EVERY_INTERFACE = ""  # what asyncio's create_server binds on IPv4 and IPv6 alike
_FORMS = "write HOST:PORT, or :PORT for every interface"


@dataclass(frozen=True)
class Listen:
    """Where to serve: `host` is EVERY_INTERFACE for `:PORT`."""

    host: str
    port: int

    @property
    def every_interface(self) -> bool:
        return self.host in (EVERY_INTERFACE, "0.0.0.0")

    def url(self, *, tls: bool = False) -> str:
        """The URL a local client would use (127.0.0.1 for every interface)."""
        host = "127.0.0.1" if self.every_interface else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"{'https' if tls else 'http'}://{host}:{self.port}"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_listen(value: str) -> Listen:
    """`HOST:PORT`, `:PORT` or `[IPv6]:PORT`; ValueError says what is wrong."""
    text = value.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        hint = f" (did you mean :{text}?)" if text.isdigit() else ""
        raise ValueError(f"{_what(value)}: missing port; {_FORMS}{hint}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if not _is_ip(host, version=6):
            raise ValueError(f"{_what(value)}: {host!r} in brackets is not an IPv6 address")
    elif ":" in host:
        raise ValueError(f"{_what(value)}: too many colons; write an IPv6 host as [{host}]")
    if host == "::":  # Go listens dual-stack there, as for an empty host
        host = EVERY_INTERFACE
    return Listen(host, _port(port_text, value))


def _what(value: str) -> str:
    return f"listen address {value!r}"


def _port(text: str, value: str) -> int:
    if not text:
        raise ValueError(f"{_what(value)}: missing port after ':'; {_FORMS}")
    if text.isdigit():
        port = int(text)
        if port > 65535:
            raise ValueError(f"{_what(value)}: port {port} is out of range (0-65535)")
        return port
    try:
        return socket.getservbyname(text, "tcp")
    except OSError:
        raise ValueError(f"{_what(value)}: {text!r} is not a port number") from None


def _is_ip(text: str, *, version: int | None = None) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return version is None or address.version == version


def is_loopback(listen: Listen) -> bool:
    """Only this machine can connect (llama-swap's IsLoopbackAddr)."""
    if listen.every_interface:
        return False
    if _is_ip(listen.host):
        return ipaddress.ip_address(listen.host).is_loopback
    try:
        found = socket.getaddrinfo(listen.host, listen.port, type=socket.SOCK_STREAM)
    except OSError:
        return False
    return bool(found) and all(ipaddress.ip_address(a[4][0]).is_loopback for a in found)
