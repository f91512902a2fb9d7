"""The `${name}` macro engine (llama-swap §1.3).

A macro list is applied from its *last* entry to its first, each entry as one
replace-all over every string in a value tree. That single rule gives llama-swap's
semantics for free: a macro's value may use macros declared before it (they are
applied later), a forward reference is never replaced and surfaces as
`unknown macro '${later}'`, and `MODEL_ID`, placed first, is visible to everything.

A string that is exactly `${name}` takes the macro's typed value (an int stays an
int), so `ttl: ${T}` and `metadata.port: ${PORT}` work. Elsewhere values are
interpolated with Go's `%v` formatting, so `0.7` prints as `0.7` and `1e6` as
`1e+06`, as they do in llama-swap.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from llamaswap.config.errors import PathT, Problems

MACRO_REF = re.compile(r"\$\{([a-zA-Z0-9_-]+)\}")
_NAME = re.compile(r"^[a-zA-Z0-9_-]+$")
RESERVED = ("PID", "PORT", "MODEL_ID")
MAX_NAME_LENGTH = 63

Scalar = str | int | float | bool


@dataclass(frozen=True)
class Macro:
    name: str
    value: Scalar


def go_format(value: Scalar) -> str:
    """Format a scalar the way Go's `fmt.Sprintf("%v", v)` does."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    return value


def _go_float(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    # repr() is the shortest round-tripping form, like Go's strconv with precision -1.
    sign, digit_tuple, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple))
    point = len(digits) + exponent  # position of the decimal point
    exp = point - 1
    prefix = "-" if sign else ""
    if exp < -4 or exp >= 6:  # %v uses %e outside this range (Go's shortest 'g')
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{prefix}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return prefix + digits + "0" * (point - len(digits))
    return f"{prefix}{digits[:point]}.{digits[point:]}"


def read_macros(raw: Any, path: PathT, problems: Problems) -> tuple[list[Macro], set[str]]:
    """Validate one `macros:` mapping; returns the usable macros in order and the names
    of declared-but-invalid ones (their uses are not reported again as unknown)."""
    macros: list[Macro] = []
    invalid: set[str] = set()
    if raw is None:
        return macros, invalid
    if not isinstance(raw, dict):
        problems.add(path, "macros must be a mapping of name to value")
        return macros, invalid
    for name, value in raw.items():
        message = _check_macro(name, value)
        if message:
            problems.add((*path, name), message)
            if name not in RESERVED:
                invalid.add(name)
        else:
            macros.append(Macro(name, value))
    return macros, invalid


def _check_macro(name: str, value: Any) -> str | None:
    if len(name) > MAX_NAME_LENGTH:
        return f"macro name '{name}' exceeds maximum length of {MAX_NAME_LENGTH} characters"
    if not _NAME.match(name):
        return f"macro name '{name}' contains invalid characters, must match ^[a-zA-Z0-9_-]+$"
    if name in RESERVED:
        return f"macro name '{name}' is reserved"
    if not isinstance(value, str | int | float | bool):
        kind = "null" if value is None else type(value).__name__
        return (
            f"invalid type {kind} for macro '{name}': "
            "must be a scalar type (string, int, float or bool)"
        )
    if isinstance(value, str) and f"${{{name}}}" in value:
        return f"macro '{name}' contains self-reference"
    return None


def model_macro_list(
    model_id: str, global_macros: Sequence[Macro], model_macros: Sequence[Macro]
) -> list[Macro]:
    """`[MODEL_ID, globals..., model-only...]`; a model macro named like a global takes
    the global's position, so globals declared after it see the model's value."""
    merged = [Macro("MODEL_ID", model_id), *global_macros]
    index = {macro.name: i for i, macro in enumerate(merged)}
    for macro in model_macros:
        if macro.name in index:
            merged[index[macro.name]] = macro
        else:
            index[macro.name] = len(merged)
            merged.append(macro)
    return merged


def substitute(value: Any, name: str, replacement: Scalar) -> Any:
    """One replace-all pass of `${name}` over every string in a tree (keys untouched)."""
    slug = f"${{{name}}}"
    if isinstance(value, str):
        if value == slug:
            return replacement
        if slug in value:
            return value.replace(slug, go_format(replacement))
        return value
    if isinstance(value, dict):
        return {key: substitute(item, name, replacement) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute(item, name, replacement) for item in value]
    return value


def expand(value: Any, macros: Sequence[Macro]) -> Any:
    """Apply a macro list, last entry first (see module docstring)."""
    for macro in reversed(macros):
        value = substitute(value, macro.name, macro.value)
    return value


def expand_text(text: str, macros: Sequence[Macro]) -> str:
    """Expand a string that must stay a string (a mapping key)."""
    for macro in reversed(macros):
        text = text.replace(f"${{{macro.name}}}", go_format(macro.value))
    return text


def leftover(text: str) -> list[str]:
    """Names of the `${name}` references still present in a string, in order."""
    return MACRO_REF.findall(text)


def strings_in(value: Any, path: PathT) -> list[tuple[PathT, str]]:
    """Every string value in a tree with its path (mapping keys are not values)."""
    if isinstance(value, str):
        return [(path, value)]
    found: list[tuple[PathT, str]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(strings_in(item, (*path, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(strings_in(item, (*path, index)))
    return found
