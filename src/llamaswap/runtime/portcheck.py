"""Is a model's port already taken by someone else? Asked before its upstream starts.

Two models with one fixed port, or a leftover server on it, would answer a health check
for the model being started: llamaswap would then take another process's 200 for readiness
and send the model's requests to it. So for a proxy on this machine (127.0.0.0/8,
localhost, ::1, 0.0.0.0, ::) a connection attempt first asks whether anything listens
there at all (a fraction of a millisecond; reading /proc/net/tcp costs milliseconds
even when it is empty, since the kernel walks its whole connection table). Only if
something answers are the listening TCP sockets read from /proc/net/tcp and
/proc/net/tcp6 (this network namespace), and their holders from /proc/<pid>/fd where
this user may look. Only sockets that would take the proxy's connections count: the
proxy's own address, its family's wildcard, or `::` (dual-stack).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import select
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

LISTEN = "0A"
IPV4_LOOPBACK = ipaddress.IPv4Address("127.0.0.1")
IPV6_LOOPBACK = ipaddress.IPv6Address("::1")
IPV4_ANY = ipaddress.IPv4Address("0.0.0.0")
IPV6_ANY = ipaddress.IPv6Address("::")
_NAMED = {"localhost": (IPV4_LOOPBACK, IPV6_LOOPBACK)}
TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
CONNECT_SECONDS = 0.05  # loopback answers at once; a full backlog still means a listener


@dataclass(frozen=True)
class Endpoint:
    """Where a local proxy URL connects: the addresses it may try, and the port."""

    host: str
    port: int
    addresses: tuple[IPAddress, ...]


def local_endpoint(url: str) -> Endpoint | None:
    """The endpoint of `url` when it is on this machine, else None (also for bad URLs)."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if host in _NAMED:
        return Endpoint(host, port, _NAMED[host])
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if address == IPV4_ANY:  # connecting to 0.0.0.0 / :: reaches this machine
        address = IPV4_LOOPBACK
    elif address == IPV6_ANY:
        address = IPV6_LOOPBACK
    if not address.is_loopback:
        return None
    return Endpoint(host, port, (address,))


def answers(endpoint: Endpoint) -> bool:
    """Does anything accept TCP connections where `endpoint` connects?"""
    for address in endpoint.addresses:
        family = socket.AF_INET if address.version == 4 else socket.AF_INET6
        try:
            probe = socket.socket(family, socket.SOCK_STREAM)
        except OSError:  # no IPv6 in this kernel
            continue
        with probe:
            probe.setblocking(False)
            error = probe.connect_ex((str(address), endpoint.port))
            if error == errno.EINPROGRESS:
                if not select.select([], [probe], [], CONNECT_SECONDS)[1]:
                    return True  # no answer yet: a listener with a full backlog
                error = probe.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error == 0:
                return True
    return False  # refused, or no such address here (no IPv6)


def _parse_address(text: str) -> tuple[IPAddress, int]:
    """`0100007F:1F90` (IPv4) or 32 hex digits + port (IPv6): each 32-bit word of the
    address is in host byte order (little-endian here)."""
    hex_address, _, hex_port = text.partition(":")
    raw = bytes.fromhex(hex_address)
    swapped = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(swapped), int(hex_port, 16)


def _takes(listener: IPAddress, wanted: IPAddress) -> bool:
    """Would a socket listening on `listener` receive connections made to `wanted`?"""
    if listener in (wanted, IPV6_ANY):
        return True
    if isinstance(listener, ipaddress.IPv6Address) and listener.ipv4_mapped is not None:
        listener = listener.ipv4_mapped
    return listener == wanted or (wanted.version == 4 and listener == IPV4_ANY)


def listening_inodes(endpoint: Endpoint, tables: Iterable[Path] = TABLES) -> set[int]:
    """Socket inodes listening where `endpoint` connects."""
    found: set[int] = set()
    hex_port = f":{endpoint.port:04X} "  # cheap filter: a busy table has thousands of lines
    for table in tables:
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:  # no IPv6 here
            continue
        for line in lines:
            if hex_port not in line:
                continue
            fields = line.split()
            if len(fields) < 10 or fields[3] != LISTEN:
                continue
            address, port = _parse_address(fields[1])
            if port == endpoint.port and any(_takes(address, w) for w in endpoint.addresses):
                found.add(int(fields[9]))
    return found


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets `pid` holds open (empty when it is gone or not ours)."""
    inodes: set[int] = set()
    try:
        entries = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for entry in entries:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{entry}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def holders(inodes: set[int]) -> list[tuple[int, str]]:
    """(pid, command line) of every process this user can inspect holding one of `inodes`."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and socket_inodes(int(name)) & inodes:
            try:
                argv = Path(f"/proc/{name}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
            except OSError:
                continue
            found.append((int(name), " ".join(a.decode(errors="replace") for a in argv)))
    return sorted(found)


class PortInUse(OSError):
    """The model's port is held by a process that is not its upstream."""

    def __init__(self, endpoint: Endpoint, held_by: list[tuple[int, str]]) -> None:
        if held_by:
            who = "; ".join(f"pid {pid} ({command})" for pid, command in held_by)
        else:
            who = "a process this user cannot inspect"
        message = (
            f"port {endpoint.port} on {endpoint.host} is already in use by {who}; "
            "its health check would answer for this model"
        )
        super().__init__(errno.EADDRINUSE, message)
        self.endpoint = endpoint
        self.held_by = held_by


def foreign_listener(url: str, ours: Callable[[], Iterable[int]] = tuple) -> PortInUse | None:
    """Why `url`'s port is taken by a process other than `ours()` (asked only when
    something listens), or None when it is free, held by one of ours, or not local."""
    endpoint = local_endpoint(url)
    if endpoint is None or not answers(endpoint):
        return None
    inodes = listening_inodes(endpoint)
    if not inodes:  # closed meanwhile
        return None
    for pid in ours():
        if not inodes:
            break
        inodes -= socket_inodes(pid)
    if not inodes:
        return None
    return PortInUse(endpoint, holders(inodes))


def check_port_free(url: str, ours: Callable[[], Iterable[int]] = tuple) -> None:
    """Raise PortInUse when a process other than `ours()` listens where `url` connects."""
    taken = foreign_listener(url, ours)
    if taken is not None:
        raise taken
