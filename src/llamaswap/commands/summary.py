"""The start-up summary `llamaswap run` prints: models, ports, policy and where to go."""

from __future__ import annotations

from llamaswap.config import Config


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


def summary(config: Config, host: str, port: int, *, demo: bool, example: str) -> str:
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    url = f"http://{shown_host}:{port}"
    rows = [("MODEL", "PORT", "TTL", "PROXY")]
    for model_id, model in config.models.items():
        ttl = f"{model.ttl}s" if model.ttl else "-"
        rows.append((model_id, str(model.port or "-"), ttl, model.proxy))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    table = "\n".join(
        "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    )
    lines = [
        "llamaswap is running" + (" the built-in demo config" if demo else ""),
        table,
        f"  policy: {_policy(config)}",
        f"  listen: {url}   (OpenAI base URL: {url}/v1)",
        f"  web UI: {url}/ui",
    ]
    if demo:
        lines.append(
            f"  try:    curl {url}/v1/chat/completions -H 'Content-Type: application/json' "
            '-d \'{"model":"small-chat","messages":[{"role":"user","content":"hi"}]}\''
        )
        lines.append(f"  real models: see {example} for a llama-server config")
    return "\n".join(lines)
