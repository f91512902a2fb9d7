"""llama-server's slot API in the fake upstream: `GET /slots` and
`POST /slots/{id}?action=save|restore` with `{"filename": ...}`, files kept in
`--slot-save-path`. Each save writes a small file naming the slot; each save or restore
prints a line (`slot 0 saved to F`, `slot 0 restored from F`), so tests read from the
upstream's own log what llamaswap asked for, and in what order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from .console import say
from .options import Options

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def slot_handlers(opts: Options) -> list[tuple[str, str, Handler]]:
    """(method, path, handler) for the slot routes (none without --slot-save-path)."""
    if not opts.slot_save_path:
        return []
    directory = Path(opts.slot_save_path)

    async def slots(_request: web.Request) -> web.Response:
        listed = [{"id": i, "n_ctx": 512, "is_processing": False} for i in range(opts.slots)]
        return web.json_response(listed)

    async def act(request: web.Request) -> web.Response:
        slot = int(request.match_info["id"])
        action = request.query.get("action", "")
        filename = str((await request.json()).get("filename", ""))
        if slot >= opts.slots or "/" in filename or not filename:
            return _error(f"invalid slot {slot} or filename {filename!r}")
        await asyncio.sleep(opts.slot_delay)
        path = directory / filename
        if action == "save":
            path.write_text(f"slot {slot}\n")
            say(f"slot {slot} saved to {filename}")
            return web.json_response({"id_slot": slot, "filename": filename, "n_saved": 10})
        if action == "restore":
            if not path.is_file():
                return _error("Unable to restore slot: invalid slot save file")
            say(f"slot {slot} restored from {filename}")
            return web.json_response({"id_slot": slot, "filename": filename, "n_restored": 10})
        return _error(f"unknown action {action!r}")

    return [("GET", "/slots", slots), ("POST", "/slots/{id}", act)]


def _error(message: str) -> web.Response:
    body = {"error": {"code": 400, "message": message, "type": "invalid_request_error"}}
    return web.json_response(body, status=400)
