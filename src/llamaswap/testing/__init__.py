"""Test doubles for llamaswap: a fake upstream server and a forking shell wrapper.

`python -m llamaswap.testing.upstream` is the fake upstream (see that module); `fork_wrapper.sh`
makes it a grandchild of whoever starts it, for the no-orphans tests. Both ship with the package
so tests, benchmarks and the demo config can use them from an installed llamaswap. Importing
this package is cheap: it does not import aiohttp.
"""

from __future__ import annotations

import sys
from pathlib import Path

FORK_WRAPPER = Path(__file__).with_name("fork_wrapper.sh")


def upstream_command(port: int | str, *options: str) -> list[str]:
    """argv that starts the fake upstream with this interpreter (`port` may be `${PORT}`)."""
    return [sys.executable, "-m", "llamaswap.testing.upstream", "--port", str(port), *options]
