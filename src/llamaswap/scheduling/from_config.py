"""Build the scheduler's inputs (per-model rules, eviction policy) from a loaded Config.

The server, `llamaswap check` and `llamaswap simulate` all go through here, so the
three can never disagree about what a config means.
"""

from __future__ import annotations

from llamaswap.config import Config

from .pinning import Pinned
from .policies import (
    CapacityGuard,
    FitPolicy,
    Group,
    GroupPolicy,
    MatrixPolicy,
    Policy,
    Resources,
)
from .scheduler import ModelRules, Probing


def model_rules(config: Config) -> dict[str, ModelRules]:
    return {
        model_id: ModelRules(
            limit=model.concurrency_limit,
            priority=config.routing.priority(model_id),
            ttl=float(model.ttl),
            swappable=model.swappable,
        )
        for model_id, model in config.models.items()
    }


def key_limits(config: Config) -> dict[str, int]:
    """Each named API key's concurrencyLimit (keys without one are left out)."""
    return {s.name: s.concurrency_limit for s in config.key_scopes.values() if s.concurrency_limit}


def resources_of(config: Config) -> Resources | None:
    """Declared capacity and needs, or None when the config declares no resources."""
    if not config.resources:
        return None
    needs = {model_id: dict(m.resources) for model_id, m in config.models.items() if m.resources}
    return Resources(dict(config.resources), needs)


def groups_of(config: Config) -> tuple[Group, ...]:
    return tuple(
        Group(g.name, tuple(g.members), g.swap, g.exclusive, g.persistent, g.yaml_path)
        for g in config.routing.groups.values()
    )


def build_policy(config: Config, *, guard: bool = True) -> Policy:
    """The eviction policy the config asks for.

    With `guard`, declared resources also bound the group and matrix routers (the router
    never starts a model that would exceed capacity); `llamaswap check` turns it off to
    judge the policy as written.
    """
    routing = config.routing
    resources = resources_of(config)
    pinned = frozenset(m for m, model in config.models.items() if not model.swappable)
    if routing.router == "fit":
        if resources is None:
            raise ValueError("routing.router.use: fit needs top-level resources")
        return _pin(FitPolicy(resources, pinned), pinned)
    policy: Policy
    if routing.router == "matrix":
        if routing.matrix is None:
            raise ValueError("routing.router.use: matrix needs routing.router.settings.matrix")
        policy = MatrixPolicy(routing.matrix.program, routing.matrix.evict_costs)
    else:
        policy = GroupPolicy(groups_of(config))
    policy = _pin(policy, pinned)
    if guard and resources is not None:
        return CapacityGuard(policy, resources)
    return policy


def _pin(policy: Policy, pinned: frozenset[str]) -> Policy:
    """`policy`, never evicting the models with `swappable: false` (if there are any)."""
    return Pinned(policy, pinned) if pinned else policy


def build_probing(config: Config) -> Probing | None:
    """Measured capacity: only under `use: fit`, and only when a resource has a probe."""
    resources = resources_of(config)
    if config.routing.router != "fit" or resources is None or not config.probes:
        return None
    recovery = max(probe.recovery for probe in config.probes.values())
    return Probing(resources, frozenset(config.probes), recovery=recovery)
