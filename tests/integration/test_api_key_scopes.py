"""API keys with scopes, over real HTTP (issue 19 part 3): a key sees and uses only its
models (403 otherwise, nothing started), `admin: false` keeps it off the routes that
change what runs for everyone, and its own concurrency limit answers 429 with
Retry-After while other keys go on."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from llamaswap.fsm.names import ProcessState

from .http_helpers import chat, error_of
from .server import RunningServer, config_yaml, fake_model, running_server

pytestmark = pytest.mark.anyio

PLAIN = {"Authorization": "Bearer sk-plain"}
TEAM = {"Authorization": "Bearer sk-team"}

KEYS = """
apiKeys:
  - sk-plain
  - key: sk-team
    name: team
    models: ["b-*", "team-*"]
    admin: false
    concurrencyLimit: 2
peers:
  far:
    proxy: http://127.0.0.1:9
    models: [open-model, team-remote]
"""


def scoped_yaml() -> str:
    return config_yaml(
        fake_model("a"),
        fake_model("b-1", "--chunks", "60", "--chunk-gap", "0.05"),
        fake_model("c", extra="aliases: [team-c]"),
        top=KEYS,
    )


async def listed(server: RunningServer, path: str, headers: dict[str, str]) -> list[str]:
    async with server.client() as http, http.get(server.url + path, headers=headers) as response:
        assert response.status == 200, await response.text()
        body: Any = await response.json()
    if path == "/api/tags":
        return sorted(m["name"] for m in body["models"])
    return sorted(m["id"] for m in body["data"])


async def test_a_scoped_key_lists_only_the_models_it_may_use() -> None:
    async with running_server(scoped_yaml()) as server:
        everything = await listed(server, "/v1/models", PLAIN)
        assert everything == ["a", "b-1", "c", "far/open-model", "far/team-remote"]
        # b-1 by its ID, c by its alias, the peer model by its bare name
        assert await listed(server, "/v1/models", TEAM) == ["b-1", "c", "far/team-remote"]
        assert await listed(server, "/models", TEAM) == ["b-1", "c", "far/team-remote"]
        assert await listed(server, "/api/tags", TEAM) == [
            "b-1:latest",
            "c:latest",
            "far/team-remote:latest",
        ]


async def test_a_model_outside_the_scope_is_403_and_nothing_starts() -> None:
    async with running_server(scoped_yaml()) as server, server.client() as http:
        for path, body in (
            ("/v1/chat/completions", chat("a")),
            ("/api/chat", {"model": "a", "messages": [{"role": "user", "content": "hi"}]}),
            ("/v1/chat/completions", chat("far/open-model")),  # a peer: never contacted
        ):
            async with http.post(server.url + path, json=body, headers=TEAM) as response:
                assert response.status == 403, await response.text()
                assert "team" in await response.text()
        async with http.post(server.url + "/upstream/a/health", headers=TEAM) as response:
            assert response.status == 403
        assert server.service.router.model_state("a") == ProcessState.STOPPED
        # allowed: by ID, and by an alias the scope matches
        for model in ("b-1", "team-c"):
            async with http.post(
                server.url + "/v1/chat/completions", json=chat(model), headers=TEAM
            ) as response:
                assert response.status == 200, await response.text()
        # the plain key keeps full access
        async with http.post(
            server.url + "/v1/chat/completions", json=chat("a"), headers=PLAIN
        ) as response:
            assert response.status == 200, await response.text()


async def test_openai_error_code_for_a_forbidden_model() -> None:
    async with running_server(scoped_yaml()) as server, server.client() as http:
        async with http.post(
            server.url + "/v1/chat/completions", json=chat("a"), headers=TEAM
        ) as response:
            message = await error_of(response, 403)
        assert "'team'" in message and "'a'" in message


async def test_a_key_without_admin_cannot_change_what_runs() -> None:
    profiles = "profiles:\n  p:\n    pins:\n      x: a\n"
    yaml = scoped_yaml().replace("models:\n  a:", profiles + "models:\n  a:", 1)
    async with running_server(yaml) as server, server.client() as http:
        for method, path in (
            ("GET", "/unload"),
            ("POST", "/api/models/unload"),
            ("POST", "/api/models/unload/b-1"),
            ("POST", "/api/models/load/b-1"),
            ("PUT", "/api/profiles/active"),
            ("GET", "/logs"),
        ):
            async with http.request(
                method, server.url + path, headers=TEAM, json={"profile": "p"}
            ) as response:
                message = await error_of(response, 403)
                assert "'team'" in message, (method, path, message)
            async with http.request(
                method, server.url + path, headers=PLAIN, json={"profile": "p"}
            ) as response:
                assert response.status != 403, (method, path)
        # what only reads state stays open to it
        for path in ("/running", "/api/profiles", "/health"):
            async with http.get(server.url + path, headers=TEAM) as response:
                assert response.status == 200, path


async def test_a_keys_concurrency_limit_is_429_with_retry_after_and_other_keys_go_on() -> None:
    async with running_server(scoped_yaml()) as server, server.client() as http:
        streams = [
            await http.post(
                server.url + "/v1/chat/completions",
                json=chat("b-1", stream=True),
                headers=TEAM,
            )
            for _ in range(2)
        ]
        try:
            for stream in streams:
                assert stream.status == 200
            async with http.post(
                server.url + "/v1/chat/completions", json=chat("b-1"), headers=TEAM
            ) as response:
                await error_of(response, 429)
                assert response.headers["Retry-After"] == "1"
                assert (await response.json())["error"]["code"] == "key_concurrency_limit"
            async with http.post(
                server.url + "/v1/chat/completions", json=chat("b-1"), headers=PLAIN
            ) as response:
                assert response.status == 200, await response.text()
        finally:
            for stream in streams:
                stream.close()
        # the slots come back once the streams are gone
        with anyio.fail_after(10):
            while True:
                async with http.post(
                    server.url + "/v1/chat/completions", json=chat("b-1"), headers=TEAM
                ) as response:
                    if response.status == 200:
                        break
                    assert response.status == 429
                await anyio.sleep(0.05)


async def test_metrics_count_requests_by_key_name_never_the_key() -> None:
    from hashlib import sha256

    from prometheus_client.parser import text_string_to_metric_families

    async with running_server(scoped_yaml()) as server, server.client() as http:
        for model, headers, status in (("a", PLAIN, 200), ("b-1", TEAM, 200), ("a", TEAM, 403)):
            async with http.post(
                server.url + "/v1/chat/completions", json=chat(model), headers=headers
            ) as response:
                assert response.status == status, await response.text()
        async with http.get(server.url + "/metrics", headers=PLAIN) as response:
            text = await response.text()
    counts = {
        (s.labels["key"], s.labels["model"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "llamaswap_key_requests_total"
    }
    plain = "key-" + sha256(b"sk-plain").hexdigest()[:8]
    assert counts == {(plain, "a", "200"): 1, ("team", "b-1", "200"): 1, ("team", "a", "403"): 1}
    assert "sk-plain" not in text and "sk-team" not in text
