"""The fake upstream's only output channel: flushed lines on stdout.

llamaswap captures an upstream's stdout to show it in its log views, so every line is flushed at
once (a buffered line would show up late, or never if the process is killed). A closed or broken
stdout must not take the server down with it, so write errors are swallowed.
"""

from __future__ import annotations

import sys


def say(line: str) -> None:
    """Print one line to stdout, flushed; ignore a stdout that has gone away."""
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):  # broken pipe, or stdout already closed
        pass
