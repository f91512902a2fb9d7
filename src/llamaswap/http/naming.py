"""From the model name a client sent to where the request goes (§1.10, §4.7, §4.8).

Order: the active profile's pins, then selectors, then local model IDs and aliases,
then peers. Selectors choose among their targets: `pin` takes the first, `warm` the
first already loaded (else starting, else the first), `spillover` the least reserved
active target until each has `spillover` requests, then a cold one.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from llamaswap.config import Config, SelectorConfig
from llamaswap.fsm.names import (
    PROCESS_FINAL,
    PROCESS_LOADING,
    PROCESS_SERVING,
    PROCESS_UNLOADING,
)
from llamaswap.runtime.callers import caller, may_use


class UnknownModel(Exception):
    """No local model, alias, selector, pin or peer model has this name (404)."""


class NoSelectorTarget(Exception):
    """A selector has no usable target right now (503)."""


@dataclass(frozen=True)
class LocalTarget:
    model_id: str
    requested: str  # the name after profile and selector rewrites (setParamsByID key)
    selector: str = ""


@dataclass(frozen=True)
class PeerTarget:
    peer_id: str
    model: str  # the peer's own model ID
    requested: str
    selector: str = ""


Target = LocalTarget | PeerTarget
StateOf = Callable[[str], str]  # model id -> process state (display only)


class Selectors:
    """Reservation counters for spillover selectors (held while a request runs)."""

    def __init__(self) -> None:
        self._reserved: Counter[tuple[str, str]] = Counter()
        self._turn = itertools.count()

    def choose(self, selector: SelectorConfig, config: Config, state_of: StateOf) -> str:
        """The chosen target as the selector names it (an alias or a setParamsByID key
        stays that name, so its parameters apply); states and reservations are those
        of the model it resolves to."""
        resolved = selector.resolved_targets
        return selector.targets[resolved.index(self._choose(selector, config, state_of))]

    def _choose(self, selector: SelectorConfig, config: Config, state_of: StateOf) -> str:
        targets = selector.resolved_targets
        if selector.strategy == "pin":
            return targets[0]
        if selector.strategy == "warm":
            for wanted in (PROCESS_SERVING, PROCESS_LOADING):
                for target in targets:
                    if target in config.models and state_of(target) in wanted:
                        return target
            return targets[0]
        return self._spillover(selector, config, state_of)

    def _spillover(self, selector: SelectorConfig, config: Config, state_of: StateOf) -> str:
        usable = [
            t
            for t in selector.resolved_targets
            if t not in config.models or state_of(t) not in PROCESS_UNLOADING | PROCESS_FINAL
        ]
        if not usable:
            raise NoSelectorTarget(f'selector "{selector.id}" has no available spillover targets')

        def active(target: str) -> bool:
            if self._reserved[(selector.id, target)]:
                return True
            return target in config.models and state_of(target) in PROCESS_SERVING | PROCESS_LOADING

        hot = [t for t in usable if active(t)]
        cold = [t for t in usable if not active(t)]
        if not hot:
            return cold[0]
        least = min(self._reserved[(selector.id, t)] for t in hot)
        if least < selector.spillover or not cold:
            tied = [t for t in hot if self._reserved[(selector.id, t)] == least]
            return tied[next(self._turn) % len(tied)]
        return cold[0]

    @contextmanager
    def reserve(self, selector: str, target: str) -> Iterator[None]:
        self._reserved[(selector, target)] += 1
        try:
            yield
        finally:
            self._reserved[(selector, target)] -= 1


def resolve(
    name: str,
    config: Config,
    *,
    profile: str | None,
    selectors: Selectors,
    state_of: StateOf,
) -> Target:
    """Where a request for `name` goes. Raises UnknownModel or NoSelectorTarget."""
    if profile is not None and profile in config.profiles:
        pins = config.profiles[profile].pins
        if name in pins:
            if not pins[name]:
                raise UnknownModel(f"model {name!r} is disabled by profile {profile!r}")
            name = pins[name]
    selector = ""
    if name in config.selectors:
        selector = name
        name = selectors.choose(config.selectors[name], config, state_of)
    model_id = config.resolve(name)
    if model_id is not None:
        return LocalTarget(model_id, name, selector)
    peer = config.peer_model(name)
    if peer is not None:
        return PeerTarget(peer[0], peer[1], name, selector)
    raise UnknownModel(f"no local or peer server found for requested model {name!r}")


def usable(name: str, config: Config, *, profile: str | None) -> bool:
    """May the current request's API key use `name`: a model or alias (its scope's globs
    match the model's ID or an alias), a profile pin or a selector (by what it leads
    to), a peer model (`<peer>/<model>` or the bare model)? Always, without keys."""
    if caller() is None:
        return True
    if profile is not None and profile in config.profiles:
        name = config.profiles[profile].pins.get(name) or name
    if name in config.selectors:
        return any(_usable_model(t, config) for t in config.selectors[name].resolved_targets)
    return _usable_model(name, config)


def _usable_model(name: str, config: Config) -> bool:
    model_id = config.resolve(name)
    if model_id is not None:
        return may_use(model_id, *config.models[model_id].aliases)
    peer = config.peer_model(name)
    if peer is not None:
        return may_use(f"{peer[0]}/{peer[1]}", peer[1])
    return may_use(name)
