"""`/health`, `/wol-health` and `/api/version` as llama-swap answers them, ported from
`internal/server/server_test.go` (Health), `apigroup_test.go` (APIVersion) and
`log_test.go` (the access log skips `/wol-health`)."""

from __future__ import annotations

import pytest

import llamaswap

from .http_helpers import error_of
from .server import config_yaml, fake_model, running_server

pytestmark = pytest.mark.anyio


async def test_health_wol_health_and_version() -> None:
    yaml = config_yaml(fake_model("a"), top="apiKeys: [sekrit]")
    async with running_server(yaml) as server, server.client() as http:
        for path in ("/health", "/wol-health"):  # open, plain text
            for method in ("GET", "HEAD"):
                async with http.request(method, server.url + path) as response:
                    assert response.status == 200, (method, path)
                    assert await response.text() == ("OK" if method == "GET" else "")
        async with http.get(server.url + "/api/version") as response:
            await error_of(response, 401)  # the API group needs the key
        headers = {"Authorization": "Bearer sekrit"}
        async with http.get(server.url + "/api/version", headers=headers) as response:
            assert response.status == 200
            assert response.content_type == "application/json"
            version = await response.json()
        assert set(version) == {"version", "commit", "build_date"}
        assert version["version"] == llamaswap.__version__
        assert all(isinstance(value, str) and value for value in version.values())
        # /wol-health is what wol-proxy polls: it stays out of the access log, /health not
        async with http.get(server.url + "/running", headers=headers) as response:
            assert response.status == 200  # its line comes after the ones above
        access = [line for line in server.service.proxy_log.lines() if "Request " in line]
        assert any('"GET /running ' in line for line in access), access
        assert not any("/wol-health" in line for line in access), access
        assert any('"GET /health ' in line for line in access), access
