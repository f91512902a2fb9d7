"""`python -m llamaswap.testing.upstream`: a fake OpenAI-compatible upstream server.

llamaswap starts this as a model's `cmd` in tests, benchmarks and the built-in demo config. It
replaces and extends llama-swap's Go simple-responder, and answers like a real llama-server
(`/health` 503 "Loading model" then `{"status":"ok"}`, SSE chunks ending in `[DONE]`, usage and
llama.cpp `timings`), so that what llamaswap is tested against looks like what it will meet.
Run with `--help` for the options; `llamaswap.testing.app` lists the endpoints.

aiohttp is imported only once the options are parsed and the signal handlers are in place: its
import is most of the start-up time, and `--exit-after 0` should not pay for it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Sequence

from llamaswap.testing.console import say
from llamaswap.testing.lifecycle import EXIT_AFTER_CODE, Lifecycle, process_started
from llamaswap.testing.options import parse_args


def main(argv: Sequence[str] | None = None, *, started: float | None = None) -> int:
    """Run the fake upstream until it is told to stop; returns the process exit code.

    `started` is the `time.monotonic()` moment that `--startup-delay` and `--exit-after` count
    from; it defaults to now, and is the process's fork time when run as a program.
    """
    opts = parse_args(argv)
    life = Lifecycle(opts, time.monotonic() if started is None else started)
    life.install_early()
    if life.exit_due():
        say(f"exiting after {opts.exit_after:g} s")
        return EXIT_AFTER_CODE
    from llamaswap.testing.app import serve

    return asyncio.run(serve(opts, life))


def _run_as_program() -> None:
    code = main(started=process_started())
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: collecting aiohttp's modules takes 70-130 ms, while a real
    # llama-server exits in a few ms after SIGTERM, and tests stop upstreams all the time.
    os._exit(code)


if __name__ == "__main__":
    _run_as_program()
