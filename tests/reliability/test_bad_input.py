"""Bad input: malformed JSON, bodies over the limit, invalid UTF-8, a model field of the
wrong type, unknown routes, `../` and encoded slashes in `/upstream/...`, absurd header
sizes. Each gets a clear 4xx, llamaswap's own errors are OpenAI-shaped JSON, nothing
starts a model, and the server is healthy afterwards.

Requests go over a raw socket: most of these are bytes no HTTP client library sends.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import pytest

from ..integration.server import RunningServer, config_yaml, fake_model, running_server
from .conftest import RawResponse, error_envelope, raw_exchange, raw_request

pytestmark = pytest.mark.anyio

KEY = "sk-reliability"
AUTH = b"Authorization: Bearer " + KEY.encode()
JSON = b"Content-Type: application/json"
MAX_BODY = 128 * 1024
CHAT = b"/v1/chat/completions"


@dataclass
class Case:
    name: str
    method: str
    target: bytes
    body: bytes | None = None
    headers: tuple[bytes, ...] = (JSON,)
    status: tuple[int, ...] = ()  # the exact 4xx expected (empty: any 4xx)
    shaped: bool = True  # llamaswap's own OpenAI-shaped JSON error (else aiohttp's parser)
    auth: bool = True
    data: bytes | None = None  # the whole request, for requests that cannot be built above

    def request(self) -> bytes:
        if self.data is not None:
            return self.data
        headers = (AUTH, *self.headers) if self.auth else self.headers
        return raw_request(self.method, self.target, self.body, headers)


def raw(name: str, data: bytes, status: tuple[int, ...] = ()) -> Case:
    """A request with bytes the parser must refuse (answered by aiohttp, plain text)."""
    return Case(name, "", b"", status=status, shaped=False, data=data)


def multipart(model: bytes, extra: bytes = b"") -> tuple[bytes, bytes]:
    boundary = b"XyZ"
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="model"\r\n\r\n' + model + b"\r\n"
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + extra + b"x\r\n--XyZ--\r\n"
    )
    return b"Content-Type: multipart/form-data; boundary=" + boundary, body


def chunked(body: bytes, size: int = 0x4000) -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def head(method: str, target: bytes, *headers: bytes) -> bytes:
    """A request head without Connection/Content-Length handling (for framing errors)."""
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", AUTH, *headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


OVER = b'{"model": "ok", "pad": "' + b"x" * (MAX_BODY + 1024) + b'"}'
FORM_TYPE, FORM_BAD_UTF8 = multipart(b"ok\xff\xfe")
_, FORM_OVER = multipart(b"ok", b"x" * (MAX_BODY + 1024))
_, FORM_NO_MODEL = multipart(b"")


CASES = [
    # --- malformed JSON: 400 -----------------------------------------------------------
    *(
        Case(f"malformed-json-{i}", "POST", CHAT, body, status=(400,))
        for i, body in enumerate(
            [
                b"{not json",
                b'{"model": "ok"',
                b'{"model": "ok",}',
                b'{"model": "ok"} trailing',
                b"nul",
                b"\x00\x01\x02",
                b"[" * 50_000 + b"]" * 50_000,  # nested far beyond the recursion limit
                b'{"model": "ok", "n": ' + b"9" * 5000 + b"}",  # beyond int digit limit
                b'{"model": "ok", "x": "\\uZZZZ"}',
            ]
        )
    ),
    # an empty JSON body names no model: llama-swap's 404
    Case("empty-json-body", "POST", CHAT, b"", status=(404,)),
    *(
        Case(f"json-not-an-object-{i}", "POST", CHAT, body, status=(400,))
        for i, body in enumerate([b"[1, 2]", b'"ok"', b"42", b"null", b"true"])
    ),
    # --- the model field of the wrong type: 400 -----------------------------------------
    *(
        Case(f"model-type-{i}", "POST", CHAT, b'{"model": ' + value + b"}", status=(400,))
        for i, value in enumerate(
            [b"5", b"1.5", b"true", b"false", b"[]", b'["ok"]', b"{}", b'{"id": "ok"}']
        )
    ),
    # no model at all (empty, null or missing): llama-swap's 404
    Case("model-empty", "POST", CHAT, b'{"model": ""}', status=(404,)),
    Case("model-null", "POST", CHAT, b'{"model": null}', status=(404,)),
    Case("model-missing", "POST", CHAT, b'{"messages": []}', status=(404,)),
    Case(
        "multipart-no-model",
        "POST",
        b"/v1/audio/transcriptions",
        FORM_NO_MODEL,
        (FORM_TYPE,),
        (404,),
    ),
    # --- invalid UTF-8 ---------------------------------------------------------------------
    Case("utf8-in-json", "POST", CHAT, b'{"model": "ok\xff\xfe"}', status=(400,)),
    Case("utf8-overlong-in-json", "POST", CHAT, b'{"model": "\xc0\xaf"}', status=(400,)),
    Case("utf8-lone-surrogate", "POST", CHAT, b'{"model": "\\ud800"}', status=(404,)),
    Case(
        "utf8-in-form",
        "POST",
        CHAT,
        b"model=ok%ff&stream=true\xff",
        (b"Content-Type: application/x-www-form-urlencoded",),
        status=(404,),
    ),
    Case(
        "utf8-in-multipart",
        "POST",
        b"/v1/audio/transcriptions",
        FORM_BAD_UTF8,
        (FORM_TYPE,),
        status=(404,),
    ),
    Case("utf8-escaped-in-path", "POST", b"/api/models/load/%ff%fe", b"", (), status=(404,)),
    Case("utf8-escaped-in-upstream", "GET", b"/upstream/%ff%fe/health", None, (), status=(404,)),
    Case("utf8-escaped-in-query", "GET", b"/props?model=%ff%fe", None, (), status=(404,)),
    raw("utf8-raw-in-path", raw_request("GET", b"/v1/\xff\xfe", None, (AUTH,))),
    # --- bodies over the limit: 413 ----------------------------------------------------------
    Case("over-limit-json", "POST", CHAT, OVER, status=(413,)),
    Case(
        "over-limit-multipart", "POST", b"/v1/audio/transcriptions", FORM_OVER, (FORM_TYPE,), (413,)
    ),
    Case("over-limit-upstream", "POST", b"/upstream/ok/v1/chat/completions", OVER, status=(413,)),
    Case(
        "over-limit-chunked",
        "POST",
        CHAT,
        data=head("POST", CHAT, JSON, b"Transfer-Encoding: chunked", b"Connection: close")
        + chunked(OVER),
        status=(413,),
    ),
    # --- unknown routes and wrong methods ------------------------------------------------------
    Case("unknown-get", "GET", b"/nope", None, (), status=(404,)),
    Case("unknown-post", "POST", b"/v1/nope", b"{}", status=(404,)),
    Case("unknown-api", "GET", b"/api/nope/../nope", None, (), status=(404,)),
    Case("unknown-dotdot-root", "GET", b"/%2e%2e/%2e%2e/etc/passwd", None, (), status=(404,)),
    Case("unknown-double-slash", "GET", b"//etc/passwd", None, (), status=(404,)),
    Case("unknown-after-route", "GET", b"/v1/chat/completions/../../health", None, ()),
    Case("wrong-method-chat", "GET", CHAT, None, (), status=(405,)),
    Case("wrong-method-health", "DELETE", b"/health", None, (), status=(405,)),
    Case("wrong-method-load", "PUT", b"/api/models/load/ok", b"", (), status=(405,)),
    Case("wrong-method-models", "PATCH", b"/v1/models", b"{}", status=(405,)),
    raw("unknown-method", raw_request("BREW", b"/v1/models", None, (AUTH,)), status=(400,)),
    # --- /upstream: traversal and encoded slashes that name no model: 404 ----------------------
    Case("upstream-unknown", "GET", b"/upstream/nope/health", None, (), status=(404,)),
    Case(
        "upstream-dotdot-first", "GET", b"/upstream/../../etc/passwd", None, (), status=(400, 404)
    ),
    Case("upstream-enc-dotdot-first", "GET", b"/upstream/%2e%2e/%2e%2e/etc/passwd", None, ()),
    Case("upstream-enc-slash-in-name", "GET", b"/upstream/ok%2F..%2F..%2Fhealth", None, ()),
    Case(
        "upstream-enc-slash-before", "GET", b"/upstream/..%2Fok/health", None, (), status=(400, 404)
    ),
    Case("upstream-enc-slash-leading", "GET", b"/upstream/%2Fok/health", None, (), status=(404,)),
    Case("upstream-nul", "GET", b"/upstream/ok%00/health", None, (), status=(404,)),
    Case("upstream-empty", "GET", b"/upstream/", None, (), status=(404,)),
    # --- API keys with bytes that are no text: 401 --------------------------------------------
    Case("auth-missing", "GET", b"/v1/models", None, (), status=(401,), auth=False),
    Case(
        "auth-utf8-bearer",
        "GET",
        b"/v1/models",
        None,
        (b"Authorization: Bearer \xff\xfe\xfd",),
        status=(401,),
        auth=False,
    ),
    Case(
        "auth-basic-not-base64",
        "GET",
        b"/v1/models",
        None,
        (b"Authorization: Basic !!!not-base64***",),
        status=(401,),
        auth=False,
    ),
    Case(
        "auth-basic-utf8",
        "GET",
        b"/v1/models",
        None,
        (b"Authorization: Basic " + base64.b64encode(b"user:\xff\xfe"),),
        status=(401,),
        auth=False,
    ),
    Case(
        "auth-x-api-key-utf8",
        "GET",
        b"/v1/models",
        None,
        (b"x-api-key: \xc3\x28",),
        status=(401,),
        auth=False,
    ),
    # --- absurd headers and framing: aiohttp's parser answers (400 or 431) -------------------
    raw("header-value-100k", raw_request("GET", b"/health", None, (b"X-Big: " + b"a" * 100_000,))),
    raw("header-name-10k", raw_request("GET", b"/health", None, (b"X-" + b"n" * 10_000 + b": v",))),
    raw(
        "headers-5000",
        raw_request("GET", b"/health", None, tuple(b"X-H%d: v" % i for i in range(5000))),
    ),
    raw(
        "headers-1mb",
        raw_request(
            "GET", b"/health", None, tuple(b"X-H%d: " % i + b"v" * 8000 for i in range(128))
        ),
    ),
    raw("request-line-100k", raw_request("GET", b"/" + b"a" * 100_000, None)),
    raw("query-100k", raw_request("GET", b"/health?" + b"q" * 100_000, None)),
    raw("header-nul", raw_request("GET", b"/health", None, (b"X-Nul: a\x00b",))),
    raw("header-no-colon", raw_request("GET", b"/health", None, (b"this is not a header",))),
    raw("header-space-before-colon", raw_request("GET", b"/health", None, (b"X-Bad : v",))),
    raw("garbage-method", b"\x00\x01\x02 / HTTP/1.1\r\n\r\n"),
    raw("content-length-text", head("POST", CHAT, JSON, b"Content-Length: abc") + b"{}"),
    raw(
        "content-length-twice",
        head("POST", CHAT, JSON, b"Content-Length: 2", b"Content-Length: 3") + b"{}",
    ),
    raw(
        "content-length-and-chunked",
        head("POST", CHAT, JSON, b"Content-Length: 5", b"Transfer-Encoding: chunked")
        + b"0\r\n\r\n",
    ),
    raw(
        "bad-chunk-size",
        head("POST", CHAT, JSON, b"Transfer-Encoding: chunked") + b"zz\r\n{}\r\n0\r\n\r\n",
    ),
]

# `..` segments after the model name in /upstream/<model>/...: refused by llamaswap itself
DOT_SEGMENTS = [
    b"/upstream/ok/../../health",
    b"/upstream/ok/v1/../../../etc/passwd",
    b"/upstream/ok/%2e%2e/%2e%2e/etc/passwd",
    b"/upstream/ok/%2E%2E/health",
    b"/upstream/ok/..%2F..%2Fhealth",
]


def problem_with(case: Case, response: RawResponse) -> str | None:
    """Why this answer is not a clear 4xx of the expected kind (None: it is)."""
    if not 400 <= response.status < 500:
        return f"status {response.status}: {response.body[:200]!r}"
    if case.status and response.status not in case.status:
        return f"status {response.status}, expected {case.status}: {response.body[:200]!r}"
    if not case.shaped:
        return None
    if not response.headers.get("content-type", "").startswith("application/json"):
        return f"not JSON ({response.headers.get('content-type')}): {response.body[:200]!r}"
    try:
        document = json.loads(response.body)
    except ValueError:
        return f"unparsable JSON: {response.body[:200]!r}"
    if error_envelope(document) is None:
        return f"not an OpenAI error envelope: {response.body[:200]!r}"
    if document.get("src") != "llamaswap":
        return f"an upstream answered, not llamaswap: {response.body[:200]!r}"
    return None


async def healthy(server: RunningServer) -> None:
    response = await raw_exchange(server.url, raw_request("GET", b"/health"))
    assert (response.status, response.body) == (200, b"OK")
    response = await raw_exchange(server.url, raw_request("GET", b"/v1/models", None, (AUTH,)))
    assert response.status == 200
    assert {m["id"] for m in response.json()["data"]} == {"ok", "org/m"}


def bad_input_server() -> str:
    return config_yaml(fake_model("ok"), fake_model("org/m"), top=f"apiKeys: [{KEY}]")


async def test_bad_input_gets_a_clear_4xx_and_the_server_stays_healthy() -> None:
    names = [case.name for case in CASES]
    assert len(names) == len(set(names))
    async with running_server(bad_input_server(), max_body=MAX_BODY) as server:
        problems = {}
        for case in CASES:
            response = await raw_exchange(server.url, case.request())
            problem = problem_with(case, response)
            if problem:
                problems[case.name] = problem
        assert not problems, "\n".join(f"{name}: {why}" for name, why in problems.items())
        # none of it started a model, and the server is fine
        router = server.service.router
        assert {m: router.model_state(m) for m in server.config.models} == {
            "ok": "stopped",
            "org/m": "stopped",
        }
        await healthy(server)
        # and still serves: an encoded slash in /upstream names a model with a slash in it
        response = await raw_exchange(
            server.url, raw_request("GET", b"/upstream/org%2Fm/health", None, (AUTH,))
        )
        assert response.status == 200, response
        body = b'{"model": "ok", "messages": [{"role": "user", "content": "hi"}]}'
        response = await raw_exchange(server.url, raw_request("POST", CHAT, body, (AUTH, JSON)))
        assert response.status == 200, response
        assert response.json()["choices"][0]["message"]["content"]


async def test_dot_segments_in_upstream_paths_are_refused_before_any_model_starts() -> None:
    """`/upstream/ok/../../x` means a path outside `ok`'s passthrough: llamaswap must
    refuse it itself (a clear 4xx) instead of starting `ok` (evicting whatever ran) and
    forwarding a traversal to its upstream."""
    async with running_server(bad_input_server(), max_body=MAX_BODY) as server:
        router = server.service.router
        problems = {}
        for target in DOT_SEGMENTS:
            case = Case(target.decode(), "GET", target, None, ())
            response = await raw_exchange(server.url, case.request())
            problem = problem_with(case, response)
            if problem:
                problems[case.name] = problem
            if router.model_state("ok") != "stopped":
                problems[case.name] = f"started the model ({problems.get(case.name)})"
                await router.unload()
        assert not problems, "\n".join(f"{name}: {why}" for name, why in problems.items())
        await healthy(server)
