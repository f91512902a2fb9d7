"""Where the model name is read and rewritten, as llama-swap does it:
`swaputil.ReplaceRequestModel` (a pin or a selector renames the model in a GET's query
and in an urlencoded form too, not only in JSON) and `auth_test.go`
(RequestContextMiddleware: a request without a model is a 404 `no model id could be
identified`)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from yarl import URL

from .http_helpers import CHAT, error_of, recorded_model, recording_upstream
from .server import config_yaml, fake_model, running_server

pytestmark = pytest.mark.anyio

R_VARIANT = "filters:\n  setParamsByID:\n    r-variant: {thinking: true}"
PINS = """
profiles:
  coding:
    pins:
      public: r-variant
      pinned-r2: r2
selectors:
  sel:
    strategy: pin
    targets: [r-variant]
peers:
  p1:
    proxy: {recorder}/peer
    models: [m1]
"""


async def test_pins_and_selectors_rename_the_model_in_queries_and_forms() -> None:
    async with recording_upstream() as recorder:
        yaml = config_yaml(
            recorded_model("r", recorder.url, extra=R_VARIANT),
            recorded_model("r2", recorder.url, extra="useModelName: renamed-r2"),
            top=PINS.format(recorder=recorder.url),
        )
        async with running_server(yaml) as server, server.client() as http:
            async with http.put(server.url + "/api/profiles/active", json={"name": "coding"}) as r:
                assert r.status == 200

            async def last_request(method: str, path: str, **kwargs: Any) -> tuple[str, bytes]:
                url = URL(server.url + path, encoded=True)
                async with http.request(method, url, **kwargs) as response:
                    assert response.status == 200, (path, await response.text())
                seen = recorder.requests()[-1]
                return seen.raw_path, seen.body

            # GET: the model parameter alone is renamed, everything else byte for byte
            path, _ = await last_request("GET", "/props?x=%41&model=public&y=1+2")
            assert path == "/props?x=%41&model=r-variant&y=1+2"
            path, _ = await last_request("GET", "/v1/audio/voices?model=sel")
            assert path == "/v1/audio/voices?model=r-variant"
            path, _ = await last_request("GET", "/sdapi/v1/loras?model=public&model=again")
            assert path == "/sdapi/v1/loras?model=r-variant"  # Go's Values.Set: one value
            # useModelName is JSON's and multipart's only (as llama-swap's filters)
            path, _ = await last_request("GET", "/props?model=pinned-r2")
            assert path == "/props?model=r2"
            path, _ = await last_request("GET", "/props?model=r2")
            assert path == "/props?model=r2"
            # a peer's FQN becomes the peer's own name
            path, _ = await last_request("GET", "/props?model=p1/m1")
            assert path == "/peer/props?model=m1"
            # urlencoded forms: the same rename, the rest of the body as sent
            form = "stream=false&model=public&prompt=a%26b+c"
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            _, body = await last_request("POST", "/completion", data=form, headers=headers)
            assert body == b"stream=false&model=r-variant&prompt=a%26b+c"
            _, body = await last_request("POST", "/completion", data="model=r", headers=headers)
            assert body == b"model=r"
            _, body = await last_request(
                "POST", "/completion", data="model=p1%2Fm1", headers=headers
            )
            assert body == b"model=m1"


async def test_a_request_without_a_model_is_a_404() -> None:
    yaml = config_yaml(fake_model("a"))
    async with running_server(yaml) as server, server.client() as http:
        url = server.url
        json_type = {"Content-Type": "application/json"}
        for raw in (b"{}", b'{"model": ""}', b'{"model": null}', b'{"messages": []}'):
            async with http.post(url + CHAT, data=raw, headers=json_type) as response:
                assert await error_of(response, 404) == "no model id could be identified"
        for path in ("/v1/audio/voices", "/sdapi/v1/loras", "/v1/audio/voices?model="):
            async with http.get(url + path) as response:
                assert await error_of(response, 404) == "no model id could be identified"
        form = aiohttp.FormData()
        form.add_field("language", "en")
        form.add_field("file", b"x", filename="f.wav")
        async with http.post(url + "/v1/audio/transcriptions", data=form) as response:
            await error_of(response, 404)
        urlencoded = {"Content-Type": "application/x-www-form-urlencoded"}
        for body in (b"", b"stream=true"):
            async with http.post(url + CHAT, data=body, headers=urlencoded) as response:
                message = await error_of(response, 404)
                assert message.startswith("no model id could be identified"), message
        # as text when asked (llama-swap's SendResponse)
        async with http.post(url + CHAT, json={}, headers={"Accept": "text/plain"}) as response:
            assert response.status == 404
            assert await response.text() == "llamaswap: no model id could be identified"
        # a body that cannot be read at all is still the client's error
        async with http.post(url + CHAT, data=b"{not json", headers=json_type) as response:
            await error_of(response, 400)
        assert server.service.router.model_state("a") == "stopped"
