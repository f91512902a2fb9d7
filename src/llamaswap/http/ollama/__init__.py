"""The Ollama API, translated to and from the upstreams' OpenAI-compatible API."""

from __future__ import annotations

from .routes import add_routes

__all__ = ["add_routes"]
