"""Prompt caches that survive a swap: llama-server's slot save and restore.

A llama-server started with `--slot-save-path DIR` can write each slot's KV cache to a
file in DIR and read it back (`POST /slots/{id}?action=save|restore`, body
`{"filename": ...}`). Before llamaswap stops such a model (unload, eviction, ttl,
reload, shutdown; not after a crash) it saves every slot; after the next start, once
healthy and before the first request, it restores them, so a conversation that comes
back to the model is not processed again.

Files are named after the model and a hash of its command (`prefix`), so a model whose
`cmd` changed (another GGUF, another context size) never gets a cache that does not
fit it. Every save or restore is bounded by `persistSlotsTimeout`: one that takes longer
is abandoned (the model is stopped, or serves, without it) and the reason logged.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import anyio

from llamaswap.config.fingerprint import command_fingerprint

SLOT_FLAG = "--slot-save-path"


def slot_save_path(argv: Sequence[str]) -> str:
    """The `--slot-save-path` of a llama-server command line ("" when it has none)."""
    for index, arg in enumerate(argv):
        if arg == SLOT_FLAG and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(SLOT_FLAG + "="):
            return arg.split("=", 1)[1]
    return ""


def slot_prefix(model: str, cmd: str, proxy: str) -> str:
    """The file-name prefix of `model`'s slot files: its id and its command's fingerprint
    (the same after a restart that moved its port)."""
    digest = command_fingerprint(cmd, proxy)[:12]
    return f"llamaswap-{re.sub(r'[^A-Za-z0-9._-]', '_', model)}-{digest}"


def slot_file(prefix: str, slot_id: int) -> str:
    return f"{prefix}-slot{slot_id}.bin"


async def save_slots(base_url: str, prefix: str, limit: float) -> str:
    """Save every slot; a sentence saying what was saved, or why it was abandoned."""
    started = time.monotonic()
    saved = tokens = 0
    try:
        with anyio.fail_after(limit):
            async with _session() as session:
                for slot in await _slot_ids(session, base_url):
                    body = await _act(session, base_url, slot, "save", slot_file(prefix, slot))
                    saved += 1
                    tokens += int(body.get("n_saved", 0))
    except TimeoutError:
        return f"saving the prompt caches was abandoned after {limit:g}s"
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return f"saving the prompt caches failed: {exc}"
    seconds = time.monotonic() - started
    return f"saved {tokens} cached tokens from {saved} slots in {seconds:.2f}s"


async def restore_slots(base_url: str, prefix: str, directory: str, limit: float) -> str:
    """Restore every slot that has a file; what was restored, or why it was abandoned."""
    started = time.monotonic()
    restored = tokens = 0
    try:
        with anyio.fail_after(limit):
            async with _session() as session:
                for slot in await _slot_ids(session, base_url):
                    name = slot_file(prefix, slot)
                    if not (Path(directory) / name).is_file():
                        continue
                    body = await _act(session, base_url, slot, "restore", name)
                    restored += 1
                    tokens += int(body.get("n_restored", 0))
    except TimeoutError:
        return f"restoring the prompt caches was abandoned after {limit:g}s"
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return f"restoring the prompt caches failed: {exc}"
    if not restored:
        return "no saved prompt caches to restore"
    seconds = time.monotonic() - started
    return f"restored {tokens} cached tokens into {restored} slots in {seconds:.2f}s"


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(trust_env=False, timeout=aiohttp.ClientTimeout(total=None))


async def _slot_ids(session: aiohttp.ClientSession, base_url: str) -> list[int]:
    async with session.get(base_url.rstrip("/") + "/slots") as response:
        response.raise_for_status()
        slots = await response.json()
    return [int(slot["id"]) for slot in slots if isinstance(slot, dict) and "id" in slot]


async def _act(
    session: aiohttp.ClientSession, base_url: str, slot: int, action: str, filename: str
) -> dict[str, Any]:
    url = f"{base_url.rstrip('/')}/slots/{slot}?action={action}"
    async with session.post(url, json={"filename": filename}) as response:
        body = await response.json(content_type=None)
        if response.status >= 400:
            message = body.get("error", {}).get("message", "") if isinstance(body, dict) else ""
            raise ValueError(f"slot {slot} {action}: {response.status} {message}".strip())
    return body if isinstance(body, dict) else {}
