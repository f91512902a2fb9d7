"""Request rewriting before forwarding (§1.7): model name, stripParams, setParams, setParamsByID.

Order on JSON bodies: the model name (profile/selector rewrite, then useModelName),
then strip, then set, then setParamsByID for the name the client asked for. `model`
itself is protected from strip/set. Dotted keys address nested fields. Multipart
bodies only get the model name rewritten; other bodies pass untouched.
"""

from __future__ import annotations

import copy
import json
from email.message import EmailMessage
from typing import Any

from aiohttp import FormData

from llamaswap.config import Filters

from .extract import Inbound

PROTECTED = frozenset({"model"})


def _set_path(document: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = document
    for key in parents:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[leaf] = value


def _delete_path(document: dict[str, Any], path: str) -> None:
    *parents, leaf = path.split(".")
    node: Any = document
    for key in parents:
        node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(leaf, None)


def rewrite_json(
    document: dict[str, Any],
    *,
    model_name: str | None,
    filters: Filters,
    requested: str,
) -> dict[str, Any]:
    """A rewritten copy of the request document."""
    out = copy.deepcopy(document)
    if model_name:
        out["model"] = model_name
    for key in filters.strip_params:
        if key not in PROTECTED:
            _delete_path(out, key)
    for key in sorted(filters.set_params):
        if key not in PROTECTED:
            _set_path(out, key, copy.deepcopy(filters.set_params[key]))
    by_id = filters.set_params_by_id.get(requested, {})
    for key in sorted(by_id):
        if key not in PROTECTED:
            _set_path(out, key, copy.deepcopy(by_id[key]))
    return out


def needs_rewrite(model_name: str | None, filters: Filters, requested: str) -> bool:
    return bool(
        model_name
        or filters.strip_params
        or filters.set_params
        or filters.set_params_by_id.get(requested)
    )


def encode_json(document: dict[str, Any]) -> bytes:
    """ASCII JSON: valid even when the client sent lone surrogates (\\ud83d)."""
    return json.dumps(document, separators=(",", ":")).encode("ascii")


async def rewritten_body(
    inbound: Inbound, renamed: str, filters: Filters, requested: str
) -> tuple[bytes, dict[str, str]]:
    """The body to forward and any header it needs (a multipart form gets a new boundary).

    JSON bodies get the new model name and the filters; multipart forms only the name;
    other bodies pass untouched.
    """
    if inbound.json is not None and needs_rewrite(renamed, filters, requested):
        document = rewrite_json(
            inbound.json, model_name=renamed or None, filters=filters, requested=requested
        )
        return encode_json(document), {}
    if inbound.multipart is not None and renamed:
        body, content_type = await rewrite_multipart(inbound.multipart, renamed)
        return body, {"Content-Type": content_type}
    return inbound.body, {}


async def rewrite_multipart(message: EmailMessage, model_name: str) -> tuple[bytes, str]:
    """The form with its `model` field replaced: (body, content type)."""
    form = FormData()
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if name == "model" and filename is None:
            form.add_field("model", model_name)
        elif filename is not None:
            form.add_field(name, data, filename=filename, content_type=part.get_content_type())
        else:
            form.add_field(name, data.decode("utf-8", "replace"))
    payload = form()
    sink = _Sink()
    await payload.write(sink)  # type: ignore[arg-type]  # only write() is used
    return b"".join(sink.parts), payload.content_type


class _Sink:
    """Collects what an aiohttp payload writes."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    async def write(self, data: bytes) -> None:
        self.parts.append(bytes(data))
