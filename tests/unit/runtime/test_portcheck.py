"""Which proxies are local, and which listening sockets would take their connections."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import pytest

from llamaswap.runtime.portcheck import (
    Endpoint,
    PortInUse,
    answers,
    foreign_listener,
    listening_inodes,
    local_endpoint,
)
from llamaswap.testing.ports import free_port

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:9999", ("127.0.0.1", 9999, (V4("127.0.0.1"),))),
        ("http://LocalHost:8080/v1", ("localhost", 8080, (V4("127.0.0.1"), V6("::1")))),
        ("http://[::1]:7000", ("::1", 7000, (V6("::1"),))),
        ("http://0.0.0.0:7001", ("0.0.0.0", 7001, (V4("127.0.0.1"),))),
        ("http://[::]:7002", ("::", 7002, (V6("::1"),))),
        ("http://127.0.0.2", ("127.0.0.2", 80, (V4("127.0.0.2"),))),
        ("https://localhost", ("localhost", 443, (V4("127.0.0.1"), V6("::1")))),
    ],
)
def test_local_proxies(url: str, expected: tuple[str, int, tuple[object, ...]]) -> None:
    assert local_endpoint(url) == Endpoint(*expected)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url", ["http://10.0.0.5:8080", "http://gpu-box:8080", "http://h:notaport", "not a url"]
)
def test_remote_or_broken_proxies_are_not_checked(url: str) -> None:
    assert local_endpoint(url) is None
    assert foreign_listener(url) is None


HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"


def row(address: str, state: str, inode: int) -> str:
    rest = "00000000:00000000 00:00000000 00000000  1000        0"
    return f"   0: {address} 00000000:0000 {state} {rest} {inode} 1 0000000000000000 100 0 0 10 0\n"


@pytest.fixture
def tables(tmp_path: Path) -> list[Path]:
    tcp, tcp6 = tmp_path / "tcp", tmp_path / "tcp6"
    tcp.write_text(
        HEADER
        + row("0100007F:270F", "0A", 11)  # 127.0.0.1:9999 listening
        + row("0100007F:270F", "06", 12)  # a TIME_WAIT on the same port: not a holder
        + row("00000000:2710", "0A", 13)  # 0.0.0.0:10000
        + row("0200007F:2711", "0A", 14)  # 127.0.0.2:10001
    )
    tcp6.write_text(
        HEADER
        + row("00000000000000000000000001000000:2712", "0A", 21)  # [::1]:10002
        + row("00000000000000000000000000000000:2713", "0A", 22)  # [::]:10003
        + row("0000000000000000FFFF00000100007F:2714", "0A", 23)  # [::ffff:127.0.0.1]:10004
    )
    return [tcp, tcp6]


@pytest.mark.parametrize(
    ("url", "inodes"),
    [
        ("http://127.0.0.1:9999", {11}),
        ("http://localhost:9999", {11}),
        ("http://[::1]:9999", set()),  # an IPv4 socket never takes IPv6 connections
        ("http://127.0.0.1:10000", {13}),  # the IPv4 wildcard
        ("http://[::1]:10000", set()),
        ("http://127.0.0.1:10001", set()),  # 127.0.0.2 is another address
        ("http://127.0.0.2:10001", {14}),
        ("http://localhost:10002", {21}),
        ("http://127.0.0.1:10002", set()),
        ("http://127.0.0.1:10003", {22}),  # [::] is dual-stack unless IPV6_V6ONLY
        ("http://[::1]:10003", {22}),
        ("http://127.0.0.1:10004", {23}),
        ("http://127.0.0.1:10005", set()),
    ],
)
def test_which_listeners_take_a_proxys_connections(
    tables: list[Path], url: str, inodes: set[int]
) -> None:
    endpoint = local_endpoint(url)
    assert endpoint is not None
    assert listening_inodes(endpoint, tables) == inodes


def test_the_error_names_port_holder_and_reason() -> None:
    endpoint = Endpoint("127.0.0.1", 9999, (V4("127.0.0.1"),))
    error = PortInUse(endpoint, [(42, "llama-server --port 9999")])
    assert isinstance(error, OSError)
    assert error.strerror == (
        "port 9999 on 127.0.0.1 is already in use by pid 42 (llama-server --port 9999); "
        "its health check would answer for this model"
    )
    assert "a process this user cannot inspect" in str(PortInUse(endpoint, []))


def test_answers_asks_whether_anything_listens() -> None:
    port = free_port()
    assert not answers(Endpoint("127.0.0.1", port, (V4("127.0.0.1"),)))
    with socket.create_server(("127.0.0.1", port)):
        assert answers(Endpoint("127.0.0.1", port, (V4("127.0.0.1"),)))
        assert answers(Endpoint("localhost", port, (V6("::1"), V4("127.0.0.1"))))
        assert not answers(Endpoint("::1", port, (V6("::1"),)))
