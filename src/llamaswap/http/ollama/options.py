"""Ollama's `options` as OpenAI / llama.cpp request parameters.

Sampling options go to the request: OpenAI's names where OpenAI has the parameter,
llama.cpp's (`top_k`, `min_p`, `repeat_penalty`, ...) where only llama.cpp does; llama.cpp
reads those on its OpenAI endpoints too, and vLLM reads `top_k` and `min_p`. Options that
take effect when a model is loaded (`num_ctx`, `num_gpu`, `num_thread`, ...) cannot be set
per request on an upstream that is already running: they belong in the model's `cmd`
(`-c`, `-ngl`, `-t`), so they are dropped, as are options no upstream knows. Ollama
ignores unknown options too (it logs them); nothing here is an error.
"""

from __future__ import annotations

from typing import Any

# Ollama option -> the upstream parameter that carries it.
SAMPLING: dict[str, str] = {
    "temperature": "temperature",
    "top_p": "top_p",
    "seed": "seed",
    "stop": "stop",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "num_predict": "max_tokens",
    "top_k": "top_k",
    "min_p": "min_p",
    "typical_p": "typical_p",
    "repeat_penalty": "repeat_penalty",
    "repeat_last_n": "repeat_last_n",
    "num_keep": "n_keep",
    "mirostat": "mirostat",
    "mirostat_tau": "mirostat_tau",
    "mirostat_eta": "mirostat_eta",
}

# Fixed when the upstream starts: set them in the model's cmd instead.
LOAD_TIME = frozenset(
    {
        "num_ctx",
        "num_batch",
        "num_gpu",
        "main_gpu",
        "num_thread",
        "use_mmap",
        "use_mlock",
        "numa",
        "low_vram",
        "f16_kv",
        "vocab_only",
        "logits_all",
        "embedding_only",
        "draft_num_predict",
    }
)


def sampling_parameters(options: Any) -> dict[str, Any]:
    """The upstream parameters for an Ollama `options` object (anything else: none)."""
    if not isinstance(options, dict):
        return {}
    out: dict[str, Any] = {}
    for name, value in options.items():
        target = SAMPLING.get(name)
        if target is None or value is None:
            continue
        if name == "num_predict":
            # -1 (until done), -2 (fill the context) and 0 leave the upstream's default
            if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
                out[target] = int(value)
            continue
        if name == "stop" and isinstance(value, str):
            value = [value]
        out[target] = value
    return out
