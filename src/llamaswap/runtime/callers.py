"""Who is asking: the API key scope of the request being served.

The HTTP front door sets it once per request, after the key is checked; the router
reads it when that request asks for a lease (which models the key may use, and the
key's name for its concurrency limit and its turn in the queue). A context variable,
because it follows the request's own task and nothing else: a handler never passes it
along by hand, so no route can forget it.
"""

from __future__ import annotations

from contextvars import ContextVar

from llamaswap.config.keys import KeyScope
from llamaswap.scheduling import ModelForbidden

CALLER: ContextVar[KeyScope | None] = ContextVar("llamaswap_caller", default=None)


def caller() -> KeyScope | None:
    """The scope of the key the current request presented (None: no keys configured)."""
    return CALLER.get()


def may_use(*names: str) -> bool:
    """May the current request use the model known by any of `names`?"""
    scope = CALLER.get()
    return scope is None or scope.allows(*names)


def admit(model: str, *aliases: str) -> str:
    """The current request's key name ("" without keys), if it may use `model` (known
    also by `aliases`); raises ModelForbidden otherwise."""
    scope = CALLER.get()
    if scope is None:
        return ""
    if not scope.allows(model, *aliases):
        raise ModelForbidden(model, scope.name)
    return scope.name
