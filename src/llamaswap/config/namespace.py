"""Names a request can use, and the settings that point at them (§1.10, §1.11, preload).

A requested name resolves, in order, to a local model ID, a local alias, a peer's
`<peer>/<model>`, or a bare model name that exactly one peer lists. Peers,
profiles, selectors and the preload hook all refer to models by such names, so they
are checked together here once the local models are known.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llamaswap.config.errors import PathT, Problems
from llamaswap.config.models import (
    DEFAULT_GROUP,
    ModelConfig,
    PeerConfig,
    ProfileConfig,
    RoutingConfig,
    SelectorConfig,
)
from llamaswap.config.parts import build_filters, build_timeouts, url_problem
from llamaswap.config.schema import RawPeer, RawProfile, RawSelector, decode, warn_unknown_keys
from llamaswap.matrix import can_contain_all

PEER_RESPONSE_HEADER_TIMEOUT = 60.0
STRATEGIES = ("warm", "pin", "spillover")


@dataclass
class Namespace:
    model_ids: set[str]
    aliases: dict[str, str]  # alias -> model ID
    peers: dict[str, PeerConfig] = field(default_factory=dict)

    def local(self, name: str) -> str | None:
        if name in self.model_ids:
            return name
        return self.aliases.get(name)

    def peer(self, name: str) -> str | None:
        """-> the FQN a name reaches on a peer, or None."""
        fqns = {f"{p.id}/{m}" for p in self.peers.values() for m in p.models}
        if name in fqns:
            return name
        owners = [f"{p.id}/{m}" for p in self.peers.values() for m in p.models if m == name]
        return owners[0] if len(owners) == 1 else None

    def base(self, name: str) -> str | None:
        return self.local(name) or self.peer(name)


def build_peers(raw_peers: dict[str, Any], problems: Problems) -> dict[str, PeerConfig]:
    peers: dict[str, PeerConfig] = {}
    for peer_id, raw_peer in raw_peers.items():
        path: PathT = ("peers", peer_id)
        if not peer_id.strip():
            problems.add(path, "peer IDs cannot be empty")
            continue
        raw = decode(RawPeer, raw_peer, path, problems)
        warn_unknown_keys(raw, path, problems)
        proxy = raw.proxy.strip()
        if not proxy:
            problems.add((*path, "proxy"), "proxy is required")
        else:
            reason = url_problem(proxy)
            if reason:
                problems.add((*path, "proxy"), f"invalid peer proxy URL ({proxy}): {reason}")
        models: list[str] = []
        for index, model in enumerate(raw.models):
            name = model.strip()
            if not name:
                problems.add((*path, "models", index), "peer model names cannot be empty")
            elif name not in models:
                models.append(name)
        if not raw.models:
            problems.add((*path, "models"), "peer models can not be empty")
        peers[peer_id] = PeerConfig(
            id=peer_id,
            proxy=proxy,
            api_key=raw.api_key.strip(),
            models=models,
            filters=build_filters(raw.filters, (*path, "filters"), problems),
            timeouts=build_timeouts(
                raw.timeouts,
                (*path, "timeouts"),
                problems,
                response_header=PEER_RESPONSE_HEADER_TIMEOUT,
            ),
        )
    return peers


def check_peer_namespace(
    ns: Namespace, profiles: dict[str, ProfileConfig], problems: Problems
) -> None:
    """Every `<peer>/<model>` is unique and owned by the peer (§1.11). Selector IDs
    are checked against peer names where selectors are built."""
    owners: dict[str, tuple[str, str]] = {}
    for peer_id in sorted(ns.peers):
        for index, model in enumerate(ns.peers[peer_id].models):
            fqn = f"{peer_id}/{model}"
            where = ("peers", peer_id, "models", index)
            if fqn in owners:
                other_peer, other_model = owners[fqn]
                problems.add(
                    where,
                    f'peer model name "{fqn}" is ambiguous between peers.{other_peer} model '
                    f'"{other_model}" and peers.{peer_id} model "{model}"',
                )
                continue
            owners[fqn] = (peer_id, model)
            if fqn in ns.model_ids:
                problems.add(
                    where, f'model ID "{fqn}" conflicts with fully qualified peer model name'
                )
            elif fqn in ns.aliases:
                problems.add(
                    where,
                    f'model {ns.aliases[fqn]} alias "{fqn}" conflicts with fully qualified '
                    "peer model name",
                )
            for profile in profiles.values():
                if fqn in profile.pins:
                    problems.add(
                        where,
                        f'profile {profile.name} pin "{fqn}" conflicts with fully qualified '
                        "peer model name",
                    )


def build_profiles(
    raw_profiles: dict[str, Any], ns: Namespace, selector_ids: set[str], problems: Problems
) -> dict[str, ProfileConfig]:
    profiles: dict[str, ProfileConfig] = {}
    for name, raw_profile in raw_profiles.items():
        path: PathT = ("profiles", name)
        if not name.strip():
            problems.add(path, "profile names cannot be empty")
            continue
        if isinstance(raw_profile, list):
            problems.add(
                path,
                "legacy list syntax is no longer supported; write "
                "{description: ..., pins: {requested-name: target}}",
            )
            continue
        raw = decode(RawProfile, raw_profile, path, problems)
        warn_unknown_keys(raw, path, problems)
        if not raw.pins:
            problems.add((*path, "pins"), "pins must contain at least one entry")
        pins: dict[str, str] = {}
        for pin, target in raw.pins.items():
            where = (*path, "pins", pin)
            if not pin.strip():
                problems.add(where, "pin names cannot be empty")
                continue
            target = (target or "").strip()
            # Pins do not chain: a target must be a real name, never another pin.
            if target and ns.base(target) is None and target not in selector_ids:
                problems.add(where, f'references unknown model "{target}"')
            pins[pin] = target
        profiles[name] = ProfileConfig(name=name, description=raw.description, pins=pins)
    return profiles


def build_selectors(
    raw_selectors: dict[str, Any],
    ns: Namespace,
    models: dict[str, ModelConfig],
    routing: RoutingConfig,
    capacity: dict[str, float],
    problems: Problems,
) -> dict[str, SelectorConfig]:
    selectors: dict[str, SelectorConfig] = {}
    fqns = {f"{p.id}/{m}" for p in ns.peers.values() for m in p.models}
    for selector_id, raw_selector in raw_selectors.items():
        path: PathT = ("selectors", selector_id)
        if not selector_id.strip():
            problems.add(path, "selector names cannot be empty")
            continue
        raw = decode(RawSelector, raw_selector, path, problems)
        warn_unknown_keys(raw, path, problems)
        if selector_id in ns.model_ids:
            problems.add(path, f'name conflicts with model ID "{selector_id}"')
        elif selector_id in ns.aliases:
            problems.add(path, f'name conflicts with model alias "{selector_id}"')
        elif selector_id in fqns:
            problems.add(path, f'name conflicts with peer model "{selector_id}"')

        strategy = raw.strategy.strip()
        if not strategy:
            problems.add((*path, "strategy"), "strategy is required")
        elif strategy not in STRATEGIES:
            problems.add(
                (*path, "strategy"),
                f'unknown strategy "{strategy}" (valid: {", ".join(STRATEGIES)})',
            )
        if not raw.targets:
            problems.add((*path, "targets"), "targets must contain at least one entry")

        resolved: list[str] = []
        for index, target in enumerate(raw.targets):
            where = (*path, "targets", index)
            if target in raw_selectors:
                problems.add(
                    where,
                    f'references selector "{target}"; selector chaining is not supported',
                )
                continue
            local = ns.local(target)
            real = local or ns.peer(target)
            if real is None:
                problems.add(where, f'references unknown model "{target}"')
                continue
            if strategy == "warm" and local is None:
                problems.add(where, f'must resolve to a local model for strategy "{strategy}"')
                continue
            resolved.append(real)

        spillover = raw.settings.spillover
        if strategy == "spillover":
            if spillover < 1:
                problems.add((*path, "settings", "spillover"), f"must be >= 1, got {spillover}")
            duplicates = sorted({t for t in resolved if resolved.count(t) > 1})
            for duplicate in duplicates:
                problems.add(
                    (*path, "targets"), f'targets contains duplicate resolved model "{duplicate}"'
                )
            local_targets = [t for t in dict.fromkeys(resolved) if t in ns.model_ids]
            reason = _cannot_coexist(local_targets, models, routing, capacity)
            if reason:
                problems.add((*path, "targets"), reason)

        if strategy in STRATEGIES:
            selectors[selector_id] = SelectorConfig(
                id=selector_id,
                strategy=strategy,  # checked against STRATEGIES above
                targets=list(raw.targets),
                resolved_targets=resolved,
                spillover=max(spillover, 1),
                name=raw.name.strip(),
                description=raw.description.strip(),
                unlisted=raw.unlisted,
                metadata=dict(raw.metadata),
            )
    return selectors


def _cannot_coexist(
    targets: list[str],
    models: dict[str, ModelConfig],
    routing: RoutingConfig,
    capacity: dict[str, float],
) -> str | None:
    """Why these local spillover targets could not all be loaded at once, or None."""
    if len(targets) < 2:
        return None
    wanted = set(targets)
    if routing.router == "matrix":
        if routing.matrix and can_contain_all(routing.matrix.program, wanted):
            return None
        return "spillover targets must all appear together in one expanded matrix set"
    if routing.router == "fit":
        for name, available in capacity.items():
            total = sum(models[t].resources.get(name, 0.0) for t in targets if t in models)
            if total > available:
                return (
                    f"spillover targets do not fit together: they need {total:g} {name} "
                    f"and the machine has {available:g}"
                )
        return None
    group = routing.group_of(targets[0])
    if (
        group is None
        or group.name == DEFAULT_GROUP
        or group.swap
        or any(t not in group.members for t in targets)
    ):
        return "spillover targets must share one routing group with swap: false"
    return None


def resolve_preload(names: list[str], ns: Namespace, problems: Problems) -> list[str]:
    """hooks.on_startup.preload -> model IDs; unknown names are dropped with a warning."""
    out: list[str] = []
    for index, name in enumerate(names):
        name = name.strip()
        if not name:
            continue
        model_id = ns.local(name)
        if model_id is None:
            problems.warn(
                ("hooks", "on_startup", "preload", index),
                f"'{name}' is not a local model or alias; dropped",
            )
        else:
            out.append(model_id)
    return out
