"""The API key as llama-swap's `ExtractAPIKey` finds it: Basic (the password), then
Bearer, then x-api-key; an Authorization header that yields no key (undecodable Basic,
no colon, an empty password or token, another scheme) falls through to x-api-key."""

from __future__ import annotations

import base64

import pytest

from .http_helpers import error_of
from .server import config_yaml, fake_model, running_server

pytestmark = pytest.mark.anyio


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_an_authorization_header_without_a_key_falls_through_to_x_api_key() -> None:
    yaml = config_yaml(fake_model("a"), top="apiKeys: [sekrit]")
    async with running_server(yaml) as server, server.client() as http:
        for authorization, status in (
            ("Basic !!!not-base64!!!", 200),  # undecodable
            ("Basic " + base64.b64encode(b"no-colon").decode(), 200),
            (basic("user", ""), 200),  # an empty password is no key
            ("Bearer ", 200),  # an empty token is no key
            ("Bearer", 200),  # no token at all
            ("Digest abc", 200),  # a scheme with no key in it
            (basic("user", "wrong"), 401),  # a key was given, and it is wrong
            ("Bearer wrong", 401),
        ):
            headers = {"Authorization": authorization, "x-api-key": "sekrit"}
            async with http.get(server.url + "/running", headers=headers) as response:
                assert response.status == status, (authorization, await response.text())
        # without x-api-key the same headers are refused
        async with http.get(
            server.url + "/running", headers={"Authorization": "Basic !!!"}
        ) as response:
            await error_of(response, 401)
