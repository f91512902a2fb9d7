"""The start-up summary `llamaswap run` prints: models, ports, policy and where to go."""

from __future__ import annotations

from llamaswap.config import Config

from .listen import Listen, is_loopback


def _policy(config: Config) -> str:
    routing = config.routing
    if routing.router == "group":
        groups = [g for g in routing.groups.values() if g.members]
        return "group: " + "; ".join(
            f"{g.name}[{'swap' if g.swap else 'together'}"
            f"{', exclusive' if g.exclusive else ''}{', persistent' if g.persistent else ''}]"
            for g in groups
        )
    if routing.router == "matrix" and routing.matrix is not None:
        return "matrix: " + ", ".join(s.name for s in routing.matrix.sets)
    return "fit: " + ", ".join(f"{k}={v:g}" for k, v in config.resources.items())


def summary(
    config: Config,
    listen: Listen,
    *,
    tls: bool = False,
    source: str | None,
    example: str,
    local_only: bool | None = None,
) -> str:
    """`source`: the config file(s) it runs, None for the built-in demo. `local_only`:
    whether only this machine can connect (looked up when not given; may need DNS)."""
    demo = source is None
    url = listen.url(tls=tls)
    rows = [("MODEL", "PORT", "TTL", "PROXY")]
    for model_id, model in config.models.items():
        ttl = f"{model.ttl}s" if model.ttl else "-"
        rows.append((model_id, str(model.port or "-"), ttl, model.proxy))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    table = "\n".join(
        "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    )
    lines = [
        f"llamaswap is running {source or 'the built-in demo config'}",
        table,
        f"  policy: {_policy(config)}",
        f"  listen: {url}   (OpenAI base URL: {url}/v1)",
        f"  web UI: {url}/ui",
    ]
    if not (is_loopback(listen) if local_only is None else local_only):
        where = "every interface" if listen.every_interface else f"listening on {listen.host}"
        lines.append(
            f"  note:   other hosts on the network can reach it ({where}); "
            f"-listen 127.0.0.1:{listen.port} keeps it on this machine"
        )
    if demo:
        lines.append(
            f"  try:    curl {url}/v1/chat/completions -H 'Content-Type: application/json' "
            '-d \'{"model":"small-chat","messages":[{"role":"user","content":"hi"}]}\''
        )
        lines.append(f"  real models: see {example} for a llama-server config")
    return "\n".join(lines)
