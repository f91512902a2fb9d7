"""Answers for clients written for llama.cpp's router mode (`llama-server` with several
models; llama-swap #1033): `/props` without `?model=` and the `/models` listing.

Rules (from llama.cpp's `server-models.cpp`, `get_router_props` and `get_router_models`):

1. `GET /props` without a model (none, or empty) describes the router, not a model:
   `{"role": "router", "max_instances", "models_autoload", "model_alias", "model_path",
   "default_generation_settings": {"params": {}, "n_ctx": 0}, "ui_settings",
   "build_info", "cors_proxy_enabled"}`. Clients read `role` to know they talk to a
   router. `max_instances` is 0 (no fixed cap: the routing policy decides) and
   `models_autoload` is true (a request loads its model). With `?model=` the request is
   proxied to that model's upstream as before.
2. `GET /models` is `/v1/models` (llama-swap's records, unchanged) plus, on each record,
   what the router adds: `aliases`, `tags` (always `[]`), `architecture` (text in, text
   out, unless the model's capabilities say otherwise), `source: "preset"`,
   `can_remove: false`, and in `status` the upstream's argv (`args`). `status.value`
   uses the router's words: `loading` while a model starts, `loaded`, `unloaded`; a
   model whose start failed is `unloaded` with `failed: true`.
"""

from __future__ import annotations

from typing import Any

import llamaswap
from llamaswap.fsm.names import (
    PROCESS_ERROR,
    PROCESS_HOLDS_RESOURCES,
    PROCESS_LOADING,
    ProcessState,
)

from .service import Service

TEXT_ONLY = {"input_modalities": ["text"], "output_modalities": ["text"]}


def router_props(service: Service) -> dict[str, Any]:
    """Rule 1."""
    return {
        "role": "router",
        "max_instances": 0,
        "models_autoload": True,
        "model_alias": "llamaswap",
        "model_path": "none",
        "default_generation_settings": {"params": {}, "n_ctx": 0},
        "ui_settings": {},
        "build_info": f"llamaswap {llamaswap.__version__}",
        "cors_proxy_enabled": False,
    }


def router_status(state: ProcessState) -> dict[str, Any]:
    """A local model's `status` in the router's words (rule 2), without `args`."""
    if state in PROCESS_LOADING:
        return {"value": "loading"}
    if state in PROCESS_ERROR:
        return dict(value="unloaded", failed=True)  # llama.cpp's field, not our state
    if state in PROCESS_HOLDS_RESOURCES:  # ready, or on its way out (as llama-swap counts)
        return {"value": "loaded"}
    return {"value": "unloaded"}


def with_router_fields(service: Service, record: dict[str, Any]) -> dict[str, Any]:
    """A /v1/models record with what the router adds (rule 2)."""
    own = record.get("meta", {}).get("llamaswap", {})
    out = dict(record)
    model_id = own.get("modelID", record["id"]) if own.get("type") in ("model", "alias") else None
    model = service.config.models.get(model_id) if model_id is not None else None
    out["aliases"] = list(own.get("aliases", [])) if own.get("type") == "model" else []
    out["tags"] = []
    architecture = dict(TEXT_ONLY)
    architecture.update(record.get("architecture", {}))
    out["architecture"] = architecture
    out["source"] = "preset"
    out["can_remove"] = False
    if model is not None:
        status = router_status(service.router.model_state(model.id))
        status["args"] = model.args()
        out["status"] = status
    return out
