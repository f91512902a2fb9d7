"""Health polling: how a starting upstream becomes ready.

llama-swap waits 250 ms, then polls once a second, adding up to a second to every
swap. We probe ~5 ms after spawn, then every 10 ms for the first two seconds (where
small models become healthy: llama-server answers 50-180 ms after spawn), then back
off to at most 250 ms for slow loads. A probe to a port nobody listens on yet is a
refused connection: cheap.
"""

from __future__ import annotations

import aiohttp
import anyio

FIRST_PROBE_DELAY = 0.005
FAST_INTERVAL = 0.01
FAST_PHASE_SECONDS = 2.0
MAX_INTERVAL = 0.25
PROBE_TIMEOUT = 5.0


class HealthTimeout(Exception):
    """The upstream did not answer 200 before the deadline."""


def backoff(
    fast: float = FAST_INTERVAL, fast_for: float = FAST_PHASE_SECONDS, ceiling: float = MAX_INTERVAL
) -> list[float]:
    """The pause before each further probe: `fast` for `fast_for` seconds, then doubling up
    to `ceiling` (the last value repeats)."""
    pauses = [fast] * round(fast_for / fast)
    pause = fast * 2
    while pause < ceiling:
        pauses.append(pause)
        pause *= 2
    return [*pauses, ceiling]


async def wait_until_healthy(url: str, limit: float) -> int:
    """Probe `url` until it answers HTTP 200; return the number of probes made.

    Only 200 passes (llama-server answers 503 while it loads a model). Connection
    errors and other statuses are retried until `limit` seconds have passed.
    """
    pauses = backoff()
    probes = 0
    connector = aiohttp.TCPConnector(force_close=True, limit=1)
    try:
        with anyio.fail_after(limit):
            async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
                await anyio.sleep(FIRST_PROBE_DELAY)
                while True:
                    probes += 1
                    if await _probe(session, url):
                        return probes
                    await anyio.sleep(pauses[min(probes - 1, len(pauses) - 1)])
    except TimeoutError:
        raise HealthTimeout(f"no 200 from {url} after {limit:g}s ({probes} probes)") from None


async def _probe(session: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT)) as response:
            await response.read()
            return response.status == 200
    except (aiohttp.ClientError, OSError, TimeoutError):
        return False
