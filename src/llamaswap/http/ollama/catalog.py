"""What Ollama's listing endpoints say about llamaswap's models: `/api/tags`,
`/api/ps`, `/api/show` (`/api/version` is llama-swap's, in routes/profiles.py).

llamaswap knows a model by its config, not by a blob store, so the fields are derived:
`digest` is the SHA-256 of the model's config (it changes when the config does), `size`
the size of the GGUF files its `cmd` names (when they exist here), `context_length` the
`-c`/`--ctx-size` of its `cmd` (or `capabilities.context`), `modified_at` the time the
server started. `metadata.ollama` in a model's config may set `family`,
`parameter_size`, `quantization_level`, `size` and `capabilities` explicitly.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from llamaswap.config import Config, ModelConfig
from llamaswap.config.shell import split_command
from llamaswap.fsm.names import PROCESS_LOADING, PROCESS_SERVING

from ..naming import usable
from ..service import Service
from .expiry import expires_at
from .from_openai import created_at
from .names import display_name

# The Ollama API version this layer follows (clients gate features on it).
CONTEXT_FLAGS = ("-c", "--ctx-size")


def _ollama_meta(model: ModelConfig) -> dict[str, Any]:
    meta = model.metadata.get("ollama")
    return meta if isinstance(meta, dict) else {}


def _arguments(model: ModelConfig) -> list[str]:
    try:
        return split_command(model.cmd)
    except ValueError:
        return []


def weight_files(model: ModelConfig) -> list[str]:
    """The GGUF files the model's command names that exist on this machine."""
    return [arg for arg in _arguments(model) if arg.endswith(".gguf") and os.path.isfile(arg)]


def weights_size(model: ModelConfig) -> int:
    size = _ollama_meta(model).get("size")
    if isinstance(size, int) and not isinstance(size, bool):
        return size
    total = 0
    for path in weight_files(model):
        try:
            total += os.path.getsize(path)
        except OSError:
            continue
    return total


def context_length(model: ModelConfig) -> int:
    """`-c N` / `--ctx-size N` from the command, else `capabilities.context`, else 0."""
    args = _arguments(model)
    for i, arg in enumerate(args):
        value = ""
        if arg in CONTEXT_FLAGS and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--ctx-size="):
            value = arg.partition("=")[2]
        if value.isdigit():
            return int(value)
    return model.capabilities.context if model.capabilities else 0


def digest(model: ModelConfig) -> str:
    document = model.model_dump(mode="json", by_alias=True)
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def details(model: ModelConfig) -> dict[str, Any]:
    meta = _ollama_meta(model)
    family = str(meta.get("family", "") or "")
    return {
        "parent_model": "",
        "format": "gguf" if weight_files(model) else str(meta.get("format", "") or ""),
        "family": family,
        "families": [family] if family else None,
        "parameter_size": str(meta.get("parameter_size", "") or ""),
        "quantization_level": str(meta.get("quantization_level", "") or ""),
    }


def capabilities(model: ModelConfig) -> list[str]:
    explicit = _ollama_meta(model).get("capabilities")
    if isinstance(explicit, list) and all(isinstance(c, str) for c in explicit):
        return list(explicit)
    found = ["completion"]
    caps = model.capabilities
    if caps is not None:
        if "image" in caps.input:
            found.append("vision")
        if caps.tools:
            found.append("tools")
    return found


def _entry(name: str, model: ModelConfig | None, modified: str) -> dict[str, Any]:
    shown = display_name(name)
    return {
        "name": shown,
        "model": shown,
        "modified_at": modified,
        "size": weights_size(model) if model else 0,
        "digest": digest(model) if model else hashlib.sha256(name.encode()).hexdigest(),
        "details": details(model) if model else _no_details(),
    }


def _no_details() -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": "",
        "family": "",
        "families": None,
        "parameter_size": "",
        "quantization_level": "",
    }


def tags(service: Service) -> dict[str, Any]:
    """Every name a client may use, as `/v1/models` lists them: local models (and
    their aliases with `includeAliasesInList`), selectors, and peer models; with a
    scoped API key, only those it may use."""
    config: Config = service.config
    modified = created_at(service.started_at)
    listed: list[tuple[str, ModelConfig | None]] = []
    aliases_of: dict[str, list[str]] = {}
    for alias, model_id in config.aliases().items():
        aliases_of.setdefault(model_id, []).append(alias)
    for model_id, model in config.models.items():
        if model.unlisted:
            continue
        listed.append((model_id, model))
        if config.include_aliases_in_list:
            listed += [(a, model) for a in sorted(aliases_of.get(model_id, []))]
    listed += [(s.id, None) for s in config.selectors.values() if not s.unlisted]
    for peer in config.peers.values():
        listed += [(name, None) for name in peer.fqns()]
    profile = service.active_profile
    return {
        "models": [
            _entry(name, model, modified)
            for name, model in listed
            if usable(name, config, profile=profile)
        ]
    }


def running(service: Service) -> dict[str, Any]:
    """`/api/ps`: models serving or loading, the longest time left first."""
    config = service.config
    entries = []
    for model_id, model in config.models.items():
        state = service.router.model_state(model_id)
        if state not in PROCESS_SERVING and state not in PROCESS_LOADING:
            continue
        deadline = expires_at(service.router, model)
        size = weights_size(model)
        entry = _entry(model_id, model, "")
        del entry["modified_at"]
        entry.update(
            expires_at=created_at(deadline),
            size_vram=0,  # unknown: llamaswap does not measure where the weights went
            context_length=context_length(model),
            size=size,
        )
        entries.append((deadline, entry))
    entries.sort(key=lambda pair: -pair[0])
    return {"models": [entry for _, entry in entries]}


def show(service: Service, model_id: str) -> dict[str, Any]:
    model = service.config.models[model_id]
    info: dict[str, Any] = {"general.basename": model_id}
    family = details(model)["family"]
    if family:
        info["general.architecture"] = family
    context = context_length(model)
    if context:
        info[f"{family or 'llama'}.context_length"] = context
    return {
        "license": "",
        "modelfile": f"# served by llamaswap\nFROM {model_id}\n",
        "parameters": "",
        "template": "",
        "details": details(model),
        "model_info": info,
        "capabilities": capabilities(model),
        "modified_at": created_at(service.started_at),
    }
