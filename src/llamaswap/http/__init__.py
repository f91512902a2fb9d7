"""The HTTP layer: llama-swap's API on aiohttp, streaming without buffering."""
