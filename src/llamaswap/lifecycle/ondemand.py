"""A dict that creates an entry the first time a key is looked up with `[]`.

The simulator and the property suite keep one process core per model; creating a core
costs about a millisecond (python-statemachine resolves every callback per instance),
and most models of a large config are never touched in a given run. Iterating (and
`.get`) sees only the entries created so far: a model nobody looked at is stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


class OnDemand(dict[K, V]):
    def __init__(self, make: Callable[[K], V]) -> None:
        super().__init__()
        self._make = make

    def __missing__(self, key: K) -> V:
        value = self[key] = self._make(key)
        return value
