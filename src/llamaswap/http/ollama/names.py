"""Ollama model names (`name:tag`) onto llamaswap's model ids, aliases and peers.

Ollama clients name models `model:tag` and default the tag to `latest`; llamaswap's ids
rarely carry a tag. So a requested name is tried as written first (an id such as
`qwen3:8b` is used as is), then without its tag. Listings show ids as Ollama would:
with `:latest` unless the id already has a tag of its own.
"""

from __future__ import annotations

from ..naming import Target, UnknownModel, resolve
from ..service import Service

LATEST = "latest"


class OllamaModelNotFound(UnknownModel):
    """No model of that name; the message is Ollama's (404)."""

    def __init__(self, name: str) -> None:
        super().__init__(f'model "{name}" not found, try pulling it first')
        self.name = name


def split_tag(name: str) -> tuple[str, str]:
    """(`model`, `tag`) of `namespace/model:tag`; the tag is "" when there is none."""
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :]
    return name, ""


def display_name(model_id: str) -> str:
    """How Ollama would list this id: with `:latest` unless it has a tag already."""
    return model_id if split_tag(model_id)[1] else f"{model_id}:{LATEST}"


def candidates(name: str) -> list[str]:
    """The names to try, in order: as written, then without the tag."""
    base, tag = split_tag(name)
    return [name, base] if tag and base else [name]


def resolve_ollama(service: Service, name: str) -> Target:
    """Where a request for `name` goes (profiles, selectors, aliases, peers apply);
    OllamaModelNotFound when no candidate name is known."""
    for candidate in candidates(name.strip()):
        try:
            return resolve(
                candidate,
                service.config,
                profile=service.active_profile,
                selectors=service.selectors,
                state_of=service.router.model_state,
            )
        except UnknownModel:
            continue
    raise OllamaModelNotFound(name)


def local_id(service: Service, name: str) -> str | None:
    """The local model id for `name` (id or alias, tag optional), without profiles or
    selectors: what /api/show describes."""
    for candidate in candidates(name.strip()):
        model_id = service.config.resolve(candidate)
        if model_id is not None:
            return model_id
    return None
