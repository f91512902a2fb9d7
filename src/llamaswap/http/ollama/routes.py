"""The Ollama API on llamaswap's listener (see docs/ollama.md).

`GET /` and `HEAD /` answer "Ollama is running", as Ollama does for clients probing
for a server, except to browsers (`Accept: text/html`), which keep llama-swap's
redirect to the web UI. This family must be registered before `routes.admin`, whose
own `GET /` then never matches (aiohttp tries resources in registration order).
Endpoints that manage Ollama's model store (pull, push, create, copy, delete, blobs)
have no meaning here: llamaswap serves the models of its config. They answer 501 with
a message saying so.
"""

from __future__ import annotations

from aiohttp import web

from ..service import service_of
from . import catalog
from .embedding import embed, embeddings
from .errors import ollama_error
from .generation import chat, generate
from .incoming import Refused, model_name, read_document
from .names import local_id

RUNNING = "Ollama is running"
UNSUPPORTED = (
    ("POST", "/api/pull"),
    ("POST", "/api/push"),
    ("POST", "/api/create"),
    ("POST", "/api/copy"),
    ("DELETE", "/api/delete"),
    ("POST", "/api/blobs/{digest}"),
    ("HEAD", "/api/blobs/{digest}"),
)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", root)  # and HEAD
    # GET /api/version is llama-swap's (routes/profiles.py): `version` parses for Ollama
    # clients too, and llama-swap dashboards need its `commit` and `build_date`.
    app.router.add_get("/api/tags", tags)
    app.router.add_get("/api/ps", running)
    app.router.add_post("/api/show", show)
    app.router.add_post("/api/chat", chat)
    app.router.add_post("/api/generate", generate)
    app.router.add_post("/api/embed", embed)
    app.router.add_post("/api/embeddings", embeddings)
    for method, path in UNSUPPORTED:
        app.router.add_route(method, path, unsupported)


async def root(request: web.Request) -> web.StreamResponse:
    if "text/html" in request.headers.get("Accept", ""):
        raise web.HTTPFound("/ui")
    return web.Response(text=RUNNING)


async def tags(request: web.Request) -> web.Response:
    return web.json_response(catalog.tags(service_of(request)))


async def running(request: web.Request) -> web.Response:
    return web.json_response(catalog.running(service_of(request)))


async def show(request: web.Request) -> web.Response:
    service = service_of(request)
    try:
        name = model_name(await read_document(request))
    except Refused as refused:
        return refused.response
    model_id = local_id(service, name)
    if model_id is None:
        return ollama_error(404, f'model "{name}" not found, try pulling it first')
    return web.json_response(catalog.show(service, model_id))


async def unsupported(request: web.Request) -> web.Response:
    endpoint = request.path.removeprefix("/api/").split("/", 1)[0]
    return ollama_error(
        501,
        f"llamaswap does not support /api/{endpoint}: it serves the models in its "
        "config; add or change a model there (see docs/ollama.md)",
    )
