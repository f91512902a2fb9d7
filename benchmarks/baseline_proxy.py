"""The smallest useful aiohttp reverse proxy: the baseline benchmarks/proxy.py compares to.

It does what any Python proxy must (read the request, forward it with one shared
ClientSession, stream the answer back) and nothing llamaswap adds (routing, leases,
auth, logs, metrics, filters). It runs on uvloop, as llamaswap does by default, so the
comparison is like for like. Run by the benchmark, not by users:

    python benchmarks/baseline_proxy.py PORT UPSTREAM_URL
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import aiohttp
import uvloop
from aiohttp import web

SESSION = web.AppKey("session", aiohttp.ClientSession)


async def forward(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
    upstream_url = request.app["upstream"] + request.raw_path
    async with request.app[SESSION].post(upstream_url, data=body, headers=headers) as upstream:
        response = web.StreamResponse(
            status=upstream.status,
            headers={"Content-Type": upstream.headers.get("Content-Type", "")},
        )
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


async def health(_request: web.Request) -> web.Response:
    return web.Response(text="OK")


async def session(app: web.Application) -> AsyncIterator[None]:
    connector = aiohttp.TCPConnector(limit=256, limit_per_host=256)
    app[SESSION] = aiohttp.ClientSession(connector=connector, auto_decompress=False)
    yield
    await app[SESSION].close()


def main() -> None:
    port, upstream = int(sys.argv[1]), sys.argv[2]
    app = web.Application()
    app["upstream"] = upstream
    app.cleanup_ctx.append(session)
    app.router.add_post("/v1/chat/completions", forward)
    app.router.add_get("/health", health)
    web.run_app(
        app,
        host="127.0.0.1",
        port=port,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
