"""Prompt caches survive a swap, measured against a real llama-server (`make e2e`).

Two models in one swap group, each llama-server started with `--slot-save-path`: a long
prompt to A, then a request to B (A is saved and stopped), then the same prompt to A
again (A is started and restored before the request is granted). llama.cpp's own
`timings` say how much of the prompt it processed: all of it the first time, almost
none the third. The figures are printed for docs/benchmarks.md.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.server import running_server

from .conftest import TinyModels, llama_model, llamaswap_yaml

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_leftovers")]

PROMPT = " ".join(f"w{i}" for i in range(60))  # about 200 tokens with the tiny tokenizer


async def chat(http: aiohttp.ClientSession, url: str, model: str, text: str) -> dict[str, Any]:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": 4,
        "temperature": 0,
    }
    async with http.post(url + "/v1/chat/completions", json=body) as response:
        assert response.status == 200, await response.text()
        answer: dict[str, Any] = await response.json()
    return answer


async def a_b_a(
    binary: Path, tiny_models: TinyModels, slot_dir: Path, persist: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The timings of A's first answer and of A's answer after the swap back."""
    slots = ("--slot-save-path", str(slot_dir), "-np", "1")
    a = llama_model(tiny_models, "m1", *slots, persistSlots=persist)
    models = [a, llama_model(tiny_models, "m2")]
    async with (
        running_server(llamaswap_yaml(binary, models)) as server,
        aiohttp.ClientSession() as http,
    ):
        first = await chat(http, server.url, "m1", PROMPT)
        await chat(http, server.url, "m2", "hello")
        again = await chat(http, server.url, "m1", PROMPT)
    return first["timings"], again["timings"]


async def test_a_prompt_is_not_processed_again_after_a_b_a(
    binary: Path, tiny_models: TinyModels, tmp_path: Path
) -> None:
    for name in ("on", "off"):
        os.makedirs(tmp_path / name)
    before, after = await a_b_a(binary, tiny_models, tmp_path / "on", persist=True)
    _, baseline = await a_b_a(binary, tiny_models, tmp_path / "off", persist=False)
    print(
        f"\nA -> B -> A: first prompt_n={before['prompt_n']}; after the swap back "
        f"prompt_n={after['prompt_n']} (cache_n={after['cache_n']}); with persistSlots: "
        f"false prompt_n={baseline['prompt_n']}"
    )
    assert before["prompt_n"] >= 150, before
    assert after["cache_n"] >= before["prompt_n"] - 2, after
    assert after["prompt_n"] <= 5, after
    assert baseline["prompt_n"] >= before["prompt_n"] - 2, "without it, all of it again"
