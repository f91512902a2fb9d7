"""Macro expansion and `${PORT}` allocation over the merged tree (§1.1 steps 3-7, §1.3, §1.4).

Runs before typed decoding, on the plain tree, because macros may supply typed
values (`ttl: ${T}`) and may appear in any string at any depth.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llamaswap.config.errors import PathT, Problems
from llamaswap.config.macros import (
    Macro,
    expand,
    expand_text,
    leftover,
    model_macro_list,
    read_macros,
    strings_in,
    substitute,
)
from llamaswap.config.schema import MODEL_KEYS, TOP_LEVEL_KEYS
from llamaswap.config.shell import strip_comment_lines

DEFAULT_PROXY = "http://localhost:${PORT}"
DEFAULT_START_PORT = 5800
MAX_PORT = 65535
_SPBI = ("filters", "setParamsByID")
_CMD_STOP = "cmdStop"  # the one field where ${PID} stays, for stop time


@dataclass
class Expanded:
    """The tree after expansion: top-level values, models by ID, allocated ports."""

    top: dict[str, Any] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    # Model IDs whose entry was not a mapping: known names, nothing else to check.
    broken_models: set[str] = field(default_factory=set)


def expand_document(tree: dict[str, Any], problems: Problems) -> Expanded:
    global_macros, invalid = read_macros(tree.get("macros"), ("macros",), problems)
    out = Expanded()

    raw_models = tree.get("models")
    models: dict[str, tuple[dict[str, Any], list[Macro], set[str]]] = {}
    if raw_models is not None and not isinstance(raw_models, dict):
        problems.add(("models",), "models must be a mapping of model ID to settings")
    elif raw_models:
        for model_id, raw in raw_models.items():
            path: PathT = ("models", model_id)
            if raw is None:
                raw = {}
            if not isinstance(raw, dict):
                problems.add(path, "a model must be a mapping of settings")
                out.broken_models.add(model_id)
                continue
            model = dict(raw)
            own, own_invalid = read_macros(model.pop("macros", None), (*path, "macros"), problems)
            for key in ("cmd", _CMD_STOP):
                if isinstance(model.get(key), str):
                    model[key] = strip_comment_lines(model[key])
            if model.get("proxy") is None:
                model["proxy"] = DEFAULT_PROXY
            models[model_id] = (model, own, own_invalid)

    # Global pass: every top-level value except models sees the global macros only.
    top = {k: v for k, v in tree.items() if k not in ("macros", "models")}
    out.top = expand(top, global_macros)
    start_port = out.top.get("startPort", DEFAULT_START_PORT)
    if isinstance(start_port, bool) or not isinstance(start_port, int):
        start_port = DEFAULT_START_PORT  # the typed decode reports the bad value
    elif not 1 <= start_port <= MAX_PORT:
        start_port = DEFAULT_START_PORT  # reported once, as startPort; not again per model
    next_port = start_port

    for model_id in sorted(models):
        model, own, own_invalid = models[model_id]
        path = ("models", model_id)
        macros = model_macro_list(model_id, global_macros, own)
        model = _expand_model(model, macros, path, problems)
        cmd = model.get("cmd")
        has_cmd = isinstance(cmd, str) and cmd.strip() != ""
        if isinstance(cmd, str) and "${PORT}" in cmd:
            if next_port > MAX_PORT:
                problems.add((*path, "cmd"), f"no port left for ${{PORT}} (above {MAX_PORT})")
            out.ports[model_id] = next_port
            model = _substitute_model(model, "PORT", next_port, path, problems)
            next_port += 1
        elif has_cmd and isinstance(model.get("proxy"), str) and "${PORT}" in model["proxy"]:
            problems.add(
                (*path, "proxy"),
                "proxy uses ${PORT} but cmd does not - ${PORT} is only available when used in cmd",
            )
        _report_model_leftovers(model, path, invalid | own_invalid, problems)
        out.models[model_id] = model

    _report_top_leftovers(out.top, invalid, problems)
    return out


def _expand_model(
    model: dict[str, Any], macros: list[Macro], path: PathT, problems: Problems
) -> dict[str, Any]:
    """Expand every value; `filters.setParamsByID` keys are expanded too (as text)."""
    expanded: dict[str, Any] = expand(model, macros)
    return _rekey_set_params_by_id(expanded, lambda key: expand_text(key, macros), path, problems)


def _substitute_model(
    model: dict[str, Any], name: str, value: int, path: PathT, problems: Problems
) -> dict[str, Any]:
    replaced: dict[str, Any] = substitute(model, name, value)
    slug = f"${{{name}}}"
    return _rekey_set_params_by_id(
        replaced, lambda key: key.replace(slug, str(value)), path, problems
    )


def _rekey_set_params_by_id(
    model: dict[str, Any], rename: Callable[[str], str], path: PathT, problems: Problems
) -> dict[str, Any]:
    filters = model.get("filters")
    if not isinstance(filters, dict) or not isinstance(filters.get("setParamsByID"), dict):
        return model
    base = path + _SPBI
    renamed: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for key, params in filters["setParamsByID"].items():
        new_key = rename(key)
        if new_key in renamed:
            problems.add(
                (*base, key),
                f"keys '{origin[new_key]}' and '{key}' resolve to the same value '{new_key}'",
            )
            continue
        renamed[new_key] = params
        origin[new_key] = key
        if new_key != key:
            # Problems found later under the new key still point at the written line.
            mark = problems.locate((*base, key))
            if mark is not None:
                problems.marks.setdefault((*base, new_key), mark)
    return {**model, "filters": {**filters, "setParamsByID": renamed}}


def _report(
    path: PathT, text: str, skip: set[str], problems: Problems, *, in_model: bool = True
) -> None:
    for name in leftover(text):
        if name in skip:
            continue
        if in_model and name in ("PORT", "MODEL_ID"):
            problems.add(path, f"macro '${{{name}}}' should have been substituted")
        else:
            problems.add(path, f"unknown macro '${{{name}}}'")
        return  # one report per string, like llama-swap


def _report_model_leftovers(
    model: dict[str, Any], path: PathT, invalid: set[str], problems: Problems
) -> None:
    for key, value in model.items():
        if key not in MODEL_KEYS:
            continue
        skip = set(invalid)
        if key == _CMD_STOP:
            skip.add("PID")
        if key == "proxy":
            skip.add("PORT")  # reported by the PORT check, or by `cmd` when cmd is empty
        for where, text in strings_in(value, (*path, key)):
            _report(where, text, skip, problems)
    filters = model.get("filters")
    if isinstance(filters, dict) and isinstance(filters.get("setParamsByID"), dict):
        for key in filters["setParamsByID"]:
            _report(path + _SPBI + (key,), key, set(invalid), problems)


def _report_top_leftovers(top: dict[str, Any], invalid: set[str], problems: Problems) -> None:
    for key, value in top.items():
        if key in TOP_LEVEL_KEYS:
            for where, text in strings_in(value, (key,)):
                _report(where, text, invalid, problems, in_model=False)
