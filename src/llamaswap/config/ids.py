"""Model IDs a client can address: in a request body, and as the path `/upstream/<id>/...`.

llama-swap accepts any YAML key. But an empty or blank ID cannot be asked for, and path
syntax in an ID makes `/upstream/<id>/...` (matched segment by segment, `..` refused)
unreachable or ambiguous, and turns into a different path wherever a client, a reverse
proxy or a log viewer normalises it. `/` inside an ID stays allowed (`org/model`, the
form of peer model names) as long as every segment is a plain name.
"""

from __future__ import annotations

import json


def _is_control(char: str) -> bool:
    return ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0


def model_id_problem(model_id: str) -> str | None:
    """Why `model_id` cannot be used as a model ID, or None."""
    shown = json.dumps(model_id)
    if not model_id.strip():
        return f"model ID {shown} is empty: a request could never name it"
    if model_id != model_id.strip():
        return f"model ID {shown} starts or ends with whitespace"
    control = next((char for char in model_id if _is_control(char)), None)
    if control is not None:
        return f"model ID {shown} contains the control character U+{ord(control):04X}"
    if "\\" in model_id:
        return f"model ID {shown} contains '\\', a path separator to some clients"
    if model_id.startswith("/") or model_id.endswith("/"):
        return f"model ID {shown} starts or ends with '/' (it is a path: /upstream/<ID>/...)"
    segments = model_id.split("/")
    if "" in segments:
        return f"model ID {shown} contains an empty path segment ('//')"
    dots = next((segment for segment in segments if segment in (".", "..")), None)
    if dots is not None:
        return f"model ID {shown} contains the path segment '{dots}'"
    return None
