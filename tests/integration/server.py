"""A real llamaswap server on 127.0.0.1 for integration tests, with fake upstream models.

    async with running_server(config_yaml(fake_model("a"), fake_model("b"))) as server:
        async with server.client() as http:
            await http.post(server.url + "/v1/chat/completions", json=...)

Ports come from the kernel (port 0 for llamaswap, a block of free ports for upstreams),
the server stops by itself at the end, and every upstream it started is stopped.
"""

from __future__ import annotations

import shlex
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import anyio

from llamaswap import logsetup
from llamaswap.config import Config, parse_config
from llamaswap.http.app import build_app, serve
from llamaswap.http.service import Service
from llamaswap.server import make_service
from llamaswap.testing import upstream_command
from llamaswap.testing.ports import free_port_block


def fake_model(name: str, *options: str, extra: str = "") -> str:
    """YAML for one model served by the fake upstream (`extra`: more YAML keys, indented 4)."""
    cmd = shlex.join(upstream_command("${PORT}", "--silent", "--model", name, *options))
    lines = [f"  {name}:", f"    cmd: {cmd}", "    proxy: http://127.0.0.1:${PORT}"]
    if extra:
        lines.append(textwrap.indent(textwrap.dedent(extra).strip(), "    "))
    return "\n".join(lines)


def config_yaml(*models: str, top: str = "", ports: int | None = None) -> str:
    """A config with these models; `top`: more top-level YAML."""
    start = free_port_block(ports or max(len(models), 1))
    body = f"startPort: {start}\nhealthCheckTimeout: 15\n"
    if top:
        body += textwrap.dedent(top).strip() + "\n"
    return body + "models:\n" + "\n".join(models) + "\n"


@dataclass
class RunningServer:
    url: str
    service: Service

    @property
    def config(self) -> Config:
        return self.service.config

    def client(self, **kwargs: Any) -> aiohttp.ClientSession:
        """A client that never uses a proxy from the environment."""
        return aiohttp.ClientSession(trust_env=False, **kwargs)


@asynccontextmanager
async def running_server(
    source: str | Config, *, max_body: int | None = None
) -> AsyncIterator[RunningServer]:
    """Serve YAML text or a `Config` a test built or adjusted itself."""
    config = parse_config(source) if isinstance(source, str) else source
    service = make_service(config, max_body) if max_body else make_service(config)
    logsetup.configure(config, service.proxy_log)
    async with anyio.create_task_group() as tg:
        await tg.start(service.router.run)
        port = await tg.start(serve, build_app(service), "127.0.0.1", 0)
        try:
            yield RunningServer(f"http://127.0.0.1:{port}", service)
        finally:
            with anyio.CancelScope(shield=True), anyio.fail_after(30):
                await service.router.shutdown(2)
            tg.cancel_scope.cancel()
