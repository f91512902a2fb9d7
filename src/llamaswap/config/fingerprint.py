"""A short, stable name for what a model's command runs, for data kept across runs.

Prompt-cache files and measured needs belong to one command (another GGUF or context
size makes them wrong), but not to the port llamaswap happened to give it: `${PORT}` is
handed out in config order, so adding a model shifts every later one. The port (taken
from `proxy`) is put back as `${PORT}` before hashing.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import urlsplit


def command_fingerprint(cmd: str, proxy: str) -> str:
    """16 hex digits of SHA-256 over `cmd` with the proxy's port written as `${PORT}`."""
    try:
        port = urlsplit(proxy).port
    except ValueError:
        port = None
    if port is not None:
        cmd = re.sub(rf"(?<!\d){port}(?!\d)", "${PORT}", cmd)
    return hashlib.sha256(cmd.encode()).hexdigest()[:16]
