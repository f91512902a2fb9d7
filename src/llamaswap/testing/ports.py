"""Free ports on 127.0.0.1 for tests and benchmarks, chosen below the ephemeral range.

Asking the kernel for port 0 hands out a port from the ephemeral range
(/proc/sys/net/ipv4/ip_local_port_range), and any outgoing connection may take such a
port as its source port at any moment. A test with thousands of client connections then
finds the port of an upstream it just crashed taken by one of its own keep-alive
connections, and every restart of that upstream fails to bind. Ports below the range are
never handed out that way, so only a listener could take them.
"""

from __future__ import annotations

import random
import socket
from contextlib import closing
from pathlib import Path

EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 10000  # above the well-known and most registered service ports
ATTEMPTS = 500


def ephemeral_floor() -> int:
    """The first port the kernel may pick for outgoing connections (32768 if unknown)."""
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(ports: range) -> bool:
    sockets: list[socket.socket] = []
    try:
        for port in ports:
            sock = socket.socket()
            sockets.append(sock)
            sock.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        for sock in sockets:
            sock.close()


def free_port_block(count: int = 1) -> int:
    """The first of `count` consecutive ports that are free right now (racy only against
    other listeners, which pick at random too)."""
    ceiling = ephemeral_floor() - count
    if ceiling <= LOWEST:  # an unusual range: fall back to what the kernel hands out
        return _kernel_block(count)
    for _ in range(ATTEMPTS):
        start = random.randrange(LOWEST, ceiling)
        if _bindable(range(start, start + count)):
            return start
    raise RuntimeError("no block of free ports")


def free_port() -> int:
    return free_port_block(1)


def _kernel_block(count: int) -> int:
    for _ in range(ATTEMPTS):
        with closing(socket.socket()) as probe:
            probe.bind(("127.0.0.1", 0))
            start = int(probe.getsockname()[1])
        if start + count < 65000 and _bindable(range(start, start + count)):
            return start
    raise RuntimeError("no block of free ports")
