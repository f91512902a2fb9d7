"""Who the client is (trusted proxies) and which browser requests are cross-site."""

from __future__ import annotations

from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from llamaswap.config import parse_config
from llamaswap.http.policy import Policy, policy_of


def policy(top: str = "") -> Policy:
    return Policy.from_config(parse_config(top + "\nmodels: {}\n"))


def request(
    method: str = "GET", peer: str = "127.0.0.1", host: str = "127.0.0.1:8080", **headers: str
) -> web.Request:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        (peer, 40000) if name == "peername" else default
    )
    headers = {"Host": host, **{k.replace("_", "-"): v for k, v in headers.items()}}
    return make_mocked_request(method, "/v1/chat/completions", headers=headers, transport=transport)


# --- client address -----------------------------------------------------------------


def test_forwarded_headers_are_ignored_without_trusted_proxies() -> None:
    rules = policy()
    assert rules.client_ip(request(X_Forwarded_For="6.6.6.6")) == "127.0.0.1"
    assert rules.client_ip(request(X_Real_IP="6.6.6.6")) == "127.0.0.1"


def test_forwarded_headers_are_ignored_from_an_untrusted_peer() -> None:
    rules = policy("trustedProxies: [10.0.0.0/8]")
    assert rules.client_ip(request(peer="192.168.1.5", X_Forwarded_For="6.6.6.6")) == "192.168.1.5"


def test_a_trusted_proxy_names_the_client() -> None:
    rules = policy("trustedProxies: [10.0.0.0/8, '::1']")
    assert rules.client_ip(request(peer="10.1.2.3", X_Forwarded_For="6.6.6.6")) == "6.6.6.6"
    assert rules.client_ip(request(peer="::1", X_Real_IP="7.7.7.7")) == "7.7.7.7"
    # an IPv4 peer seen on a dual-stack socket
    assert rules.client_ip(request(peer="::ffff:10.0.0.1", X_Forwarded_For="6.6.6.6")) == "6.6.6.6"


def test_the_client_is_the_first_untrusted_hop_from_the_right() -> None:
    """Entries left of our own proxies were written by the client: a spoofed first entry
    must not become the logged address."""
    rules = policy("trustedProxies: [10.0.0.0/8]")
    forwarded = "1.1.1.1, 2.2.2.2, 10.0.0.7"
    assert rules.client_ip(request(peer="10.0.0.1", X_Forwarded_For=forwarded)) == "2.2.2.2"
    every_hop_ours = "10.0.0.9, 10.0.0.8"
    assert rules.client_ip(request(peer="10.0.0.1", X_Forwarded_For=every_hop_ours)) == "10.0.0.9"
    garbage = "evil\x01, 10.0.0.8"
    assert rules.client_ip(request(peer="10.0.0.1", X_Forwarded_For=garbage)) == "10.0.0.8"
    assert rules.client_ip(request(peer="10.0.0.1", X_Real_IP="not an ip")) == "10.0.0.1"


# --- cross-site ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    [
        "http://127.0.0.1:8080",  # the server's own origin
        "http://localhost:8080",  # localhost to localhost, same port
        "http://[::1]:8080",
    ],
)
def test_same_origin_posts_pass(origin: str) -> None:
    assert policy().cross_site(request("POST", Origin=origin)) is None


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "http://localhost:3000",  # another local web app
        "https://127.0.0.1:8443",
        "null",  # sandboxed frames and file: pages
    ],
)
def test_cross_site_posts_are_refused(origin: str) -> None:
    reason = policy().cross_site(request("POST", Origin=origin))
    assert reason is not None and "allowedOrigins" in reason


def test_default_ports_and_case_do_not_matter() -> None:
    rules = policy()
    assert rules.cross_site(request("POST", host="LLM.lan:80", Origin="http://llm.lan")) is None
    assert rules.cross_site(request("POST", host="llm.lan", Origin="HTTP://LLM.LAN")) is None


def test_configured_origins_and_star_are_allowed() -> None:
    rules = policy("allowedOrigins: ['https://Chat.Example.com:443']")
    assert rules.cross_site(request("POST", Origin="https://chat.example.com")) is None
    assert rules.cross_site(request("POST", Origin="https://other.example.com")) is not None
    anyone = policy("allowedOrigins: ['*']")
    assert anyone.cross_site(request("POST", Origin="null")) is None


def test_requests_without_browser_headers_pass() -> None:
    """curl, SDKs and servers send no Origin and no Sec-Fetch-Site."""
    assert policy().cross_site(request("POST")) is None
    assert policy().cross_site(request("DELETE")) is None


def test_safe_methods_with_a_foreign_origin_pass_but_cross_site_subresources_do_not() -> None:
    rules = policy()
    # an old browser's cross-origin GET: answered (the browser keeps the answer from the page)
    assert rules.cross_site(request("GET", Origin="http://evil.example")) is None
    # <img src=/upstream/big-model/> on another site would load that model
    image = request("GET", Sec_Fetch_Site="cross-site", Sec_Fetch_Mode="no-cors")
    assert rules.cross_site(image) is not None
    # a link the user follows from another site is a navigation: let it in
    link = request("GET", Sec_Fetch_Site="cross-site", Sec_Fetch_Mode="navigate")
    assert rules.cross_site(link) is None
    own_page = request("GET", Sec_Fetch_Site="same-origin", Sec_Fetch_Mode="cors")
    assert rules.cross_site(own_page) is None


def test_websocket_handshakes_from_foreign_origins_are_refused() -> None:
    handshake = request("GET", Origin="http://evil.example", Upgrade="websocket")
    assert policy().cross_site(handshake) is not None


def test_a_trusted_proxy_forwarded_host_is_the_host() -> None:
    rules = policy("trustedProxies: [10.0.0.1]")
    proxied = request(
        "POST",
        peer="10.0.0.1",
        host="127.0.0.1:8080",
        Origin="https://llm.example.com",
        X_Forwarded_Host="llm.example.com",
    )
    assert rules.cross_site(proxied) is None
    spoofed = request(
        "POST",
        peer="192.168.0.9",
        host="127.0.0.1:8080",
        Origin="https://llm.example.com",
        X_Forwarded_Host="llm.example.com",
    )
    assert rules.cross_site(spoofed) is not None


def test_the_policy_is_built_once_per_config() -> None:
    config = parse_config("trustedProxies: [10.0.0.1]\nmodels: {}\n")
    assert policy_of(config) is policy_of(config)
    assert policy_of(parse_config("models: {}\n")) is not policy_of(config)
