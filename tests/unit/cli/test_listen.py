"""`-listen` as Go's net.Listen reads it: `:PORT` is every interface, brackets for IPv6."""

from __future__ import annotations

import socket

import pytest

from llamaswap.commands.listen import EVERY_INTERFACE, Listen, is_loopback, parse_listen


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        (":8080", EVERY_INTERFACE, 8080),
        ("[::]:8080", EVERY_INTERFACE, 8080),  # Go listens dual-stack there too
        ("0.0.0.0:8080", "0.0.0.0", 8080),
        ("127.0.0.1:8080", "127.0.0.1", 8080),
        ("localhost:8080", "localhost", 8080),
        ("[::1]:8443", "::1", 8443),
        ("example.internal:0", "example.internal", 0),
        (" :9000 ", EVERY_INTERFACE, 9000),
    ],
)
def test_the_forms_llama_swap_accepts(text: str, host: str, port: int) -> None:
    assert parse_listen(text) == Listen(host, port)


def test_a_service_name_is_a_port_as_in_go() -> None:
    try:
        http = socket.getservbyname("http", "tcp")
    except OSError:
        pytest.skip("no services database on this machine")
    assert parse_listen("localhost:http") == Listen("localhost", http)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            "8080",
            "missing port; write HOST:PORT, or :PORT for every interface (did you mean :8080?)",
        ),
        ("nonsense", "missing port"),
        ("::1:8080", "too many colons; write an IPv6 host as [::1]"),
        ("localhost:", "missing port after ':'"),
        ("localhost:99999", "port 99999 is out of range (0-65535)"),
        ("localhost:no-such-service", "'no-such-service' is not a port number"),
        ("[localhost]:80", "'localhost' in brackets is not an IPv6 address"),
    ],
)
def test_mistakes_are_named(text: str, says: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_listen(text)
    assert str(raised.value).startswith(f"listen address {text!r}: ")
    assert says in str(raised.value)


@pytest.mark.parametrize(
    ("listen", "url"),
    [
        (Listen(EVERY_INTERFACE, 8080), "http://127.0.0.1:8080"),
        (Listen("0.0.0.0", 8080), "http://127.0.0.1:8080"),
        (Listen("::1", 8443), "http://[::1]:8443"),
        (Listen("localhost", 1), "http://localhost:1"),
    ],
)
def test_the_url_a_local_client_uses(listen: Listen, url: str) -> None:
    assert listen.url() == url
    assert listen.url(tls=True) == url.replace("http:", "https:")


@pytest.mark.parametrize(
    ("text", "loopback"),
    [
        (":8080", False),
        ("0.0.0.0:8080", False),
        ("[::]:8080", False),
        ("192.0.2.1:8080", False),
        ("127.0.0.1:8080", True),
        ("127.0.0.2:8080", True),
        ("[::1]:8080", True),
        ("localhost:8080", True),
    ],
)
def test_loopback_as_llama_swap_tells_it(text: str, loopback: bool) -> None:
    assert is_loopback(parse_listen(text)) is loopback


def test_str_is_what_was_meant() -> None:
    assert str(Listen(EVERY_INTERFACE, 8080)) == ":8080"
    assert str(Listen("::1", 1)) == "[::1]:1"
