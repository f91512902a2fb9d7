"""llamaswap: a model-swapping proxy for local LLM inference servers."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("llamaswap")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"
