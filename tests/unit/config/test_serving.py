"""Our keys for llamaswap's own HTTP server: requestHeaderTimeout, maxConnections,
allowedOrigins, trustedProxies (defaults, normalisation, errors that name the field)."""

from __future__ import annotations

import pytest

from tests.unit.config.helpers import assert_problem, load


def test_defaults() -> None:
    config = load("")
    assert config.request_header_timeout == 10.0
    assert config.max_connections == 1000
    assert config.allowed_origins == []
    assert config.trusted_proxies == []


def test_values_are_normalised() -> None:
    config = load(
        """
        requestHeaderTimeout: 2.5
        maxConnections: 0
        allowedOrigins: ["HTTPS://Chat.Example.com:443/", "http://localhost:3000", "*",
                         "chrome-extension://abcdef", "http://localhost:3000"]
        trustedProxies: [10.1.2.3/8, "::1", 192.168.0.1]
        """
    )
    assert config.request_header_timeout == 2.5
    assert config.max_connections == 0
    assert config.allowed_origins == [
        "https://chat.example.com",
        "http://localhost:3000",
        "*",
        "chrome-extension://abcdef",
    ]
    assert config.trusted_proxies == ["10.0.0.0/8", "::1/128", "192.168.0.1/32"]


@pytest.mark.parametrize(
    ("yaml_text", "path", "fragment"),
    [
        ("requestHeaderTimeout: -1", "requestHeaderTimeout", ">= 0"),
        ("requestHeaderTimeout: soon", "requestHeaderTimeout", "must be a number"),
        ("maxConnections: -5", "maxConnections", ">= 0"),
        ("maxConnections: 1.5", "maxConnections", "whole number"),
        ("allowedOrigins: [ok.example]", "allowedOrigins[0]", "an origin such as"),
        ("allowedOrigins: ['*', 'https://x.example/app']", "allowedOrigins[1]", "no path"),
        ("allowedOrigins: ['http://x.example?q=1']", "allowedOrigins[0]", "origin"),
        ("allowedOrigins: ['http://u:p@x.example']", "allowedOrigins[0]", "origin"),
        ("allowedOrigins: ['http://x.example:99999']", "allowedOrigins[0]", "origin"),
        ("allowedOrigins: https://x.example", "allowedOrigins", "must be a list"),
        ("trustedProxies: [nginx]", "trustedProxies[0]", "IP address or a CIDR"),
        ("trustedProxies: ['10.0.0.0/33']", "trustedProxies[0]", "IP address or a CIDR"),
    ],
)
def test_errors_name_the_field(yaml_text: str, path: str, fragment: str) -> None:
    assert_problem(yaml_text, path, fragment)
