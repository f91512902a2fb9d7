"""Request rewriting before forwarding (§1.7): model name, stripParams, setParams, setParamsByID.

Order on JSON bodies: the model name (profile/selector rewrite, then useModelName),
then strip, then set, then setParamsByID for the name the client asked for. `model`
itself is protected from strip/set. Dotted keys address nested fields. Multipart
bodies only get the model name rewritten.

A profile pin or a selector renames the model wherever the request carries it (as
llama-swap's `ReplaceRequestModel` does): also in a GET's query (`/props?model=`) and
in an urlencoded form body. Those two get no useModelName (llama-swap's filters touch
JSON and multipart only), and only the `model` parameter changes: every other byte of
the query or the form is forwarded as sent.
"""

from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import quote_plus, unquote_plus

from llamaswap.config import Filters

from .extract import FormModel, Inbound

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
    inbound: Inbound, renamed: str, filters: Filters, requested: str, *, pinned: str = ""
) -> tuple[bytes, dict[str, str]]:
    """The body to forward and any header it needs to go with it.

    JSON bodies get the new model name and the filters; multipart forms only the name;
    urlencoded forms only a profile's or selector's rename (`pinned`); other bodies
    pass untouched. A JSON body the client did not label as such goes out labelled
    `application/json`.
    """
    headers = {"Content-Type": inbound.content_type} if inbound.content_type else {}
    if inbound.json is not None and needs_rewrite(renamed, filters, requested):
        document = rewrite_json(
            inbound.json, model_name=renamed or None, filters=filters, requested=requested
        )
        return encode_json(document), headers
    if inbound.multipart is not None and renamed:
        return rewrite_multipart(inbound, inbound.multipart, renamed), headers
    if inbound.urlencoded and pinned:
        return rewrite_urlencoded(inbound.body, pinned), headers
    return inbound.body, headers


def _replace_model_pair(pairs: list[str], model_name: str) -> list[str]:
    """`key=value` pairs with the first `model` one set to `model_name` and any later
    ones dropped (Go's `Values.Set`); the other pairs unchanged."""
    out: list[str] = []
    done = False
    for pair in pairs:
        if unquote_plus(pair.partition("=")[0]) != "model":
            out.append(pair)
        elif not done:
            out.append("model=" + quote_plus(model_name))
            done = True
    return out


def rewrite_query(path: str, model_name: str) -> str:
    """A raw path and query with its `model` parameter renamed; the rest byte for byte."""
    base, sep, query = path.partition("?")
    if not sep:
        return path
    return base + "?" + "&".join(_replace_model_pair(query.split("&"), model_name))


def rewrite_urlencoded(body: bytes, model_name: str) -> bytes:
    """An urlencoded form with its `model` field renamed; the rest byte for byte."""
    pairs = body.decode("latin-1").split("&")  # latin-1: every byte survives the round trip
    return "&".join(_replace_model_pair(pairs, model_name)).encode("latin-1")


def rewrite_multipart(inbound: Inbound, field: FormModel, model_name: str) -> bytes:
    """The form with the value of its `model` field replaced in place: every other byte
    (boundary, other parts, files) is forwarded exactly as the client sent it."""
    value = model_name.encode()
    if b"\r" in value or b"\n" in value:
        raise ValueError(f"model name {model_name!r} cannot be written into a form")
    body = inbound.body
    return body[: field.start] + value + body[field.end :]
