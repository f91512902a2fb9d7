"""The web UI: static files from the package's `ui/` folder, served at /ui.

The UI is a single page whose own router owns every path under /ui, so an extension-less
path that is not a file (a bookmark of /ui/models, say) gets index.html; a missing file
with an extension stays a 404, so a broken asset link shows as one. Every file is read
from the installed package: nothing is fetched at run time, and the Content-Security-Policy
tells the browser so too, which keeps a stray external URL from silently working.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from aiohttp import web

UI_DIR = Path(__file__).resolve().parent.parent.parent / "ui"
INDEX = "index.html"
FAVICON = "favicon.svg"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
}
CSP = "; ".join(
    (
        "default-src 'self'",
        "connect-src 'self'",
        "img-src 'self' data:",
        "style-src 'self'",
        "script-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/ui", index)
    app.router.add_get("/ui/", index)
    app.router.add_get("/ui/{path:.+}", asset)
    app.router.add_get("/favicon.ico", favicon)


def _headers(path: Path) -> dict[str, str]:
    """`no-cache` means "revalidate", so an upgrade is never hidden behind a stale asset."""
    headers = {
        "Content-Type": CONTENT_TYPES.get(path.suffix, "application/octet-stream"),
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
    }
    if path.suffix == ".html":
        headers["Content-Security-Policy"] = CSP
        headers["Referrer-Policy"] = "no-referrer"
    return headers


def _file(path: Path) -> web.FileResponse:
    return web.FileResponse(path, headers=_headers(path))


def resolve(relative: str) -> Path | None:
    """The file under UI_DIR that `relative` names, or None: no `..`, no hidden files."""
    parts = PurePosixPath(relative).parts
    if not parts or any(part in ("..", ".") or part.startswith(".") for part in parts):
        return None
    candidate = UI_DIR.joinpath(*parts)
    return candidate if candidate.is_file() else None


async def index(_request: web.Request) -> web.FileResponse:
    return _file(UI_DIR / INDEX)


async def asset(request: web.Request) -> web.StreamResponse:
    relative = request.match_info["path"]
    found = resolve(relative)
    if found is not None:
        return _file(found)
    if "." not in PurePosixPath(relative).name:
        return _file(UI_DIR / INDEX)  # a path of the single-page app
    raise web.HTTPNotFound()


async def favicon(_request: web.Request) -> web.FileResponse:
    return _file(UI_DIR / FAVICON)
