"""API key scopes at the front door: which key was presented, and the admin routes.

A key is found by comparing it with every configured key in constant time (no early
exit tells an attacker how much of a guess was right). The admin routes are the ones
that change what runs for everyone or show other keys' traffic: a key with
`admin: false` gets 403 there. Which models a key may use is the router's check
(`runtime.callers`), so every route that leases a model is covered by one rule.
"""

from __future__ import annotations

import hmac
import re

from aiohttp import web

from llamaswap.config.keys import KeyScope

KEY_NAME = web.RequestKey("key_name", str)  # the presented key's name, for activity

ADMIN_ROUTES = re.compile(
    r"""^(?:
        GET\ /unload
      | POST\ /api/models/(?:unload|load)(?:/.*)?
      | PUT\ /api/profiles/active
      | (?:GET|HEAD)\ /logs(?:/.*)?
      | [A-Z]+\ /api/config(?:/.*)?
      | [A-Z]+\ /api/captures(?:/.*)?
      | (?:GET|HEAD)\ /api/metrics/activity
      | POST\ /api/inflight/[^/]+/cancel
      | [A-Z]+\ /api/(?:pull|push|create|copy|delete|blobs)(?:/.*)?
    )$""",
    re.VERBOSE,
)


def find_scope(presented: str, scopes: dict[str, KeyScope]) -> KeyScope | None:
    """The scope of the configured key equal to `presented`, or None."""
    try:
        given = presented.encode()
    except UnicodeEncodeError:  # not a key anyone configured (keys are text)
        return None
    found: KeyScope | None = None
    for key, scope in scopes.items():
        if hmac.compare_digest(given, key.encode()):
            found = scope
    return found


def is_admin_route(method: str, path: str) -> bool:
    """Does this route change what runs for everyone, or show other keys' requests?"""
    return ADMIN_ROUTES.match(f"{method} {path}") is not None
