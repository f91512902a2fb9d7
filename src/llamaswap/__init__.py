"""llamaswap: a model-swapping proxy for local LLM inference servers."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    # Looked up lazily: importlib.metadata costs ~100 ms, paid by every fake upstream start.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("llamaswap")
        except PackageNotFoundError:  # a source tree without an install
            return "0.0.0"
    raise AttributeError(name)
