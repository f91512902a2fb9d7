"""Headers as llamaswap shows them to operators (in-flight requests, captures).

Go's canonical names (llama-swap's UI and API show them so), the first value of each,
and credentials replaced: a key or cookie seen by llamaswap never reaches a page or a
capture. Built only when something is shown, never on the request path.
"""

from __future__ import annotations

from collections.abc import Mapping

SENSITIVE = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"})
REDACTED = "[REDACTED]"


def canonical(name: str) -> str:
    """Go's canonical header key: `x-api-key` -> `X-Api-Key`."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def header_map(headers: Mapping[str, str]) -> dict[str, str]:
    """The first value of each header under its canonical name, credentials redacted."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        key = canonical(name)
        if key not in out:
            out[key] = REDACTED if name.lower() in SENSITIVE else value
    return out
