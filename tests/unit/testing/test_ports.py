"""Test ports come from below the ephemeral range, where outgoing connections never land."""

from __future__ import annotations

import socket

from llamaswap.testing.ports import ephemeral_floor, free_port, free_port_block


def test_a_block_is_free_consecutive_and_below_the_ephemeral_range() -> None:
    start = free_port_block(5)
    assert start >= 10000 and start + 5 <= ephemeral_floor()
    listeners = []
    try:
        for port in range(start, start + 5):
            sock = socket.socket()
            listeners.append(sock)
            sock.bind(("127.0.0.1", port))  # raises if the block was not free
    finally:
        for sock in listeners:
            sock.close()


def test_an_outgoing_connection_never_takes_a_chosen_port() -> None:
    port = free_port()
    with socket.socket() as server, socket.socket() as client:
        server.bind(("127.0.0.1", 0))
        server.listen()
        client.connect(server.getsockname())
        assert client.getsockname()[1] >= ephemeral_floor() > port
