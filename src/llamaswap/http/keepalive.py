"""Per-request keep-alive on the OpenAI routes: LM Studio's `ttl` body field.

LM Studio lets a request say how long its model may stay idle afterwards (`"ttl": 300`,
seconds). llamaswap does the same through the router (`lease(keep_alive=...)`, the
scheduler's idle limit): a number sets the model's idle time from the end of this
request, `0` unloads it once idle, a negative number keeps it loaded. The field is
taken out of the body before it goes upstream (llama-server would reject or ignore
it). Anything that is not a number is left where it is, for the upstream to judge.
"""

from __future__ import annotations

from dataclasses import replace

from .extract import Inbound
from .filters import encode_json

FIELD = "ttl"


def requested_keep_alive(inbound: Inbound) -> tuple[Inbound, float | None]:
    """The request without its `ttl`, and the keep-alive it asked for (None: none)."""
    document = inbound.json
    if document is None or FIELD not in document:
        return inbound, None
    value = document[FIELD]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return inbound, None
    stripped = {key: item for key, item in document.items() if key != FIELD}
    return replace(inbound, json=stripped, body=encode_json(stripped)), float(value)
