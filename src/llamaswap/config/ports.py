"""Models that share a proxy address and may run at once: one would answer for the other.

At run time the second model's start fails (its port is taken, see
`llamaswap.runtime.portcheck`); here `config check` (and every load) warns ahead of
time. Whether two models may run at once is asked of the eviction policy the server
itself uses, so groups, matrix sets, `fit` resources and persistent groups all count.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from llamaswap.config.errors import Problems
from llamaswap.config.models import Config

# Names for "this machine, the usual loopback": one key for all of them.
_LOCAL = frozenset({"localhost", "127.0.0.1", "0.0.0.0", "::1", "::"})


def address_key(url: str) -> tuple[str, int] | None:
    """(host, port) a proxy URL connects to, local spellings folded into one; None if bad."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if not host:
        return None
    return ("localhost" if host in _LOCAL else host, port)


def warn_shared_ports(config: Config, problems: Problems) -> None:
    """Warn (on the later model's `proxy`) for each pair of models with one proxy address
    that the routing policy lets run together."""
    # Imported here: scheduling reads the finished Config, so it imports this package.
    from llamaswap.scheduling.from_config import build_policy
    from llamaswap.scheduling.policies import rules_allowing

    users: dict[tuple[str, int], list[str]] = {}
    for model_id in sorted(config.models):
        key = address_key(config.models[model_id].proxy)
        if key is not None:
            users.setdefault(key, []).append(model_id)
    shared = [(key, ids) for key, ids in users.items() if len(ids) > 1]
    if not shared:
        return
    try:
        policy = build_policy(config)
    except ValueError:  # reported as a config error already
        return
    for (_, port), ids in shared:
        for index, later in enumerate(ids):
            for earlier in ids[:index]:
                rules = rules_allowing(policy, {earlier, later})
                if rules:
                    problems.warn(
                        ("models", later, "proxy"),
                        f'port {port} is also the proxy port of model "{earlier}" and the two '
                        f"can run at once ({', '.join(rules)}): the second to start would fail "
                        "(its port is taken); give each model its own port, or use ${PORT}",
                    )
