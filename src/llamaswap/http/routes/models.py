"""`GET /v1/models` and `/models`: every model a client may ask for (§2.6).

`/models` carries the same records with the fields llama.cpp's router mode adds
(`llamaswap.http.router_mode`), for clients written for it.

Local models (unlisted ones hidden), their aliases when `includeAliasesInList`, peer
models as `<peer>/<model>`, selectors, and the active profile's pins. Each record says
whether it is loaded, and `meta.llamaswap` tells what kind of name it is.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from llamaswap.config import Capabilities, Config, ModelConfig
from llamaswap.fsm.names import PROCESS_HOLDS_RESOURCES, PROCESS_LOADING, PROCESS_SERVING

from ..naming import usable
from ..router_mode import with_router_fields
from ..service import Service, service_of

CAPABILITY_META_KEYS = ("architecture", "capabilities", "supported_parameters", "context_length")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/models", list_router_models)


def _capability_fields(caps: Capabilities | None, meta: dict[str, Any]) -> dict[str, Any]:
    if caps is None or caps == Capabilities():
        return {}
    for key in CAPABILITY_META_KEYS:
        meta.pop(key, None)
    fields: dict[str, Any] = {}
    architecture: dict[str, Any] = {}
    if caps.input:
        architecture["input_modalities"] = list(caps.input)
    if caps.output:
        architecture["output_modalities"] = list(caps.output)
    if caps.input and caps.output:
        architecture["modality"] = "+".join(caps.input) + "->" + "+".join(caps.output)
    if architecture:
        fields["architecture"] = architecture
    flags = {
        "vision": "image" in caps.input,
        "audio_transcriptions": "audio" in caps.input and "text" in caps.output,
        "audio_speech": "text" in caps.input and "audio" in caps.output,
        "image_generation": "text" in caps.input and "image" in caps.output,
        "image_to_image": "image" in caps.input and "image" in caps.output,
        "function_calling": caps.tools,
        "reranker": caps.reranker,
    }
    capabilities = {name: True for name, on in flags.items() if on}
    if capabilities:
        fields["capabilities"] = capabilities
    if caps.tools:
        fields["supported_parameters"] = ["tools", "tool_choice"]
    if caps.context > 0:
        fields["context_length"] = caps.context
        meta["n_ctx"] = caps.context
    return fields


def _record(record_id: str, created: int, loaded: bool, **extra: Any) -> dict[str, Any]:
    record = {"id": record_id, "object": "model", "created": created, "owned_by": "llamaswap"}
    for key in ("name", "description"):
        value = str(extra.pop(key, "") or "").strip()
        if value:
            record[key] = value
    record.update(extra)
    record["status"] = {"value": "loaded" if loaded else "unloaded"}
    return record


def _local_records(service: Service, created: int) -> list[dict[str, Any]]:
    config = service.config
    aliases_of: dict[str, list[str]] = {}
    for alias, model_id in config.aliases().items():
        aliases_of.setdefault(model_id, []).append(alias)
    records = []
    for model_id, model in config.models.items():
        if model.unlisted:
            continue
        loaded = service.router.model_state(model_id) in PROCESS_HOLDS_RESOURCES
        aliases = sorted(a for a in aliases_of.get(model_id, []) if a.strip())
        records.append(_model_record(model_id, model, created, loaded, {"type": "model"}, aliases))
        if config.include_aliases_in_list:
            for alias in aliases:
                own = {"type": "alias", "modelID": model_id}
                records.append(_model_record(alias, model, created, loaded, own, []))
    return records


def _model_record(
    record_id: str,
    model: ModelConfig,
    created: int,
    loaded: bool,
    own: dict[str, Any],
    aliases: list[str],
) -> dict[str, Any]:
    meta = dict(model.metadata)
    fields = _capability_fields(model.capabilities, meta)
    llamaswap = {**meta, **own}
    if aliases:
        llamaswap["aliases"] = aliases
    return _record(
        record_id,
        created,
        loaded,
        name=model.name,
        description=model.description,
        **fields,
        meta={"llamaswap": llamaswap},
    )


def _other_records(service: Service, created: int) -> list[dict[str, Any]]:
    config: Config = service.config
    records = []
    for peer in config.peers.values():
        for model in peer.models:
            records.append(
                _record(
                    f"{peer.id}/{model}",
                    created,
                    False,
                    name=f"{peer.id}: {model}",
                    meta={"llamaswap": {"type": "peer", "peerID": peer.id}},
                )
            )
    for selector in config.selectors.values():
        if selector.unlisted:
            continue
        local = [t for t in selector.resolved_targets if t in config.models]
        checked = local[:1] if selector.strategy == "pin" else local
        loaded = any(
            service.router.model_state(t) in PROCESS_SERVING | PROCESS_LOADING for t in checked
        )
        own: dict[str, Any] = {
            **selector.metadata,
            "type": "selector",
            "strategy": selector.strategy,
            "targets": list(selector.targets),
        }
        if selector.strategy == "spillover":
            own["spillover"] = selector.spillover
        records.append(
            _record(
                selector.id,
                created,
                loaded,
                name=selector.name,
                description=selector.description,
                meta={"llamaswap": own},
            )
        )
    profile = config.profiles.get(service.active_profile or "")
    if profile is not None:
        taken = {r["id"] for r in records} | set(config.models) | set(config.aliases())
        for pin, target in profile.pins.items():
            if target and pin not in taken:
                records.append(
                    _record(pin, created, False, meta={"llamaswap": {"type": "profile"}})
                )
    return records


def all_records(service: Service) -> list[dict[str, Any]]:
    """Every name a client may ask for; with a scoped API key, only those it may use."""
    created = int(time.time())
    records = _local_records(service, created) + _other_records(service, created)
    profile = service.active_profile
    records = [r for r in records if usable(str(r["id"]), service.config, profile=profile)]
    records.sort(key=lambda record: str(record["id"]))
    return records


async def list_models(request: web.Request) -> web.Response:
    return _listing(request, all_records(service_of(request)))


async def list_router_models(request: web.Request) -> web.Response:
    """`/models`: the same records with llama.cpp router mode's fields (router_mode.py)."""
    service = service_of(request)
    return _listing(request, [with_router_fields(service, r) for r in all_records(service)])


def _listing(request: web.Request, records: list[dict[str, Any]]) -> web.Response:
    response = web.json_response({"object": "list", "data": records})
    origin = request.headers.get("Origin")
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
    return response
